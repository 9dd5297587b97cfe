"""Wall-clock time for a KerasTuner search to find a Fashion-MNIST model above
a target test accuracy, with and without keras-fastrain.

Both searches are a RandomSearch with the same seed over the same user
hyperparameters of the baseline recipe's model (Flatten, Dense `units`
relu, Dense 10 softmax; `units` in 64/128/256, Adam rate 1e-3 or 2e-3),
`max_trials` trials of up to `epochs` epochs, the test set scored after
every epoch (counted in the time):

- `KerasTuner`: `keras_tuner.RandomSearch`, a plain `keras.Sequential`,
  objective `val_accuracy`, batch 32 (Keras's default, the classic recipe);
- `keras-fastrain`: `keras_fastrain.tuner.RandomSearch` with
  `FastHyperModel(build_model, batch_sizes=(256, 512),
  adaptive_batch=(False, True))` (a FastModel, the rate scaled by the sqrt
  rule) and the objective `TimeToAccuracy("val_accuracy", target)`, which
  stops each trial at the target.

Reports the seconds from `search()` to the end of the first epoch, in any
trial, whose test accuracy reached the target ("time to find"), the whole
search's seconds and the best accuracy found, with the speed-up against
KerasTuner from the same repeat; the searches run in turn, repeated.

    KERAS_BACKEND=tensorflow python benchmarks/tuning.py

Prints a table and writes benchmarks/results/tuning_<backend>.json and
tuning_<backend>.png.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

import keras
import keras_tuner
from common import (
    RESULTS_DIR,
    save_accuracy_plot,
    save_result,
    scaled_fashion_mnist,
    seconds_to_target,
)

from keras_fastrain.tuner import FastHyperModel, RandomSearch, TimeToAccuracy

SEARCHES = ("KerasTuner", "keras-fastrain")
EVALUATION_BATCH = 2048
# Every epoch of every trial of the running search: (seconds since search(), accuracy).
POINTS = []


class RecordAccuracy(keras.callbacks.Callback):
    """Appends (seconds since the search began, test accuracy) to `POINTS`
    after every epoch. KerasTuner deep-copies callbacks per trial, so the
    record lives in the module, not in the callback."""

    def __init__(self, start):
        super().__init__()
        self.start = start

    def on_epoch_end(self, epoch, logs=None):
        POINTS.append((time.perf_counter() - self.start, float(logs["val_accuracy"])))


def build_model(hp):
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Choice("units", [64, 128, 256]), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(hp.Choice("learning_rate", [1e-3, 2e-3])),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def run(search, data, args, seed, directory):
    """One search; returns its points, total seconds and trial count."""
    (x, y), test = data
    keras.utils.set_random_seed(seed)
    common = {"max_trials": args.max_trials, "seed": seed, "directory": directory}
    if search == "KerasTuner":
        tuner = keras_tuner.RandomSearch(
            build_model, objective="val_accuracy", project_name="plain", **common
        )
        batch = {"batch_size": 32}
    else:
        hypermodel = FastHyperModel(
            build_model, batch_sizes=(256, 512), adaptive_batch=(False, True)
        )
        tuner = RandomSearch(
            hypermodel,
            objective=TimeToAccuracy("val_accuracy", target=args.target),
            project_name="fastrain",
            **common,
        )
        batch = {}
    POINTS.clear()
    start = time.perf_counter()
    tuner.search(
        x,
        y,
        validation_data=test,
        validation_batch_size=EVALUATION_BATCH,
        epochs=args.epochs,
        callbacks=[RecordAccuracy(start)],
        verbose=0,
        **batch,
    )
    seconds = time.perf_counter() - start
    return {"points": list(POINTS), "search_seconds": seconds, "trials": len(tuner.oracle.trials)}


def summarize(repeats, target):
    rows = []
    for search in SEARCHES:
        found = [seconds_to_target(r["points"], target) for r in repeats[search]]
        reached = [f for f in found if f is not None]
        rows.append(
            {
                "search": search,
                "seconds_to_find": found,
                "median_seconds_to_find": statistics.median(reached) if reached else None,
                "found": f"{len(reached)}/{len(found)}",
                "median_search_seconds": statistics.median(
                    r["search_seconds"] for r in repeats[search]
                ),
                "best_accuracy": max(max(a for _, a in r["points"]) for r in repeats[search]),
            }
        )
    # Ratios within each repeat (same machine state), then their median.
    for row in rows:
        pairs = zip(
            [seconds_to_target(r["points"], target) for r in repeats["KerasTuner"]],
            row["seconds_to_find"],
            strict=True,
        )
        ratios = [base / mine for base, mine in pairs if base and mine]
        row["speedup_to_find"] = statistics.median(ratios) if ratios else None
    return rows


def print_table(rows, target):
    print(
        f"\n{'search':<16} {'median s to find ' + format(target, 'g'):>22} {'found':>6} "
        f"{'speed-up':>9} {'search s':>9} {'best acc':>9}  seconds per repeat"
    )
    for row in rows:
        median = row["median_seconds_to_find"]
        ratio = row["speedup_to_find"]
        each = ", ".join("-" if t is None else f"{t:.1f}" for t in row["seconds_to_find"])
        print(
            f"{row['search']:<16} {'-' if median is None else f'{median:.1f}':>22} "
            f"{row['found']:>6} {'-' if ratio is None else f'{ratio:.1f}x':>9} "
            f"{row['median_search_seconds']:>9.1f} {row['best_accuracy']:>9.4f}  {each}"
        )


def plot(repeats, target, path):
    curves = []
    for index, search in enumerate(SEARCHES):
        for number, result in enumerate(repeats[search]):
            seconds, accuracy = zip(*result["points"], strict=True)
            best = [max(accuracy[: i + 1]) for i in range(len(accuracy))]
            curves.append((search if number == 0 else None, index, seconds, best))
    save_accuracy_plot(
        curves,
        target,
        f"RandomSearch on Fashion-MNIST, {keras.backend.backend()}, every repeat",
        "wall-clock seconds since search() (test scoring included, log scale)",
        "best test accuracy so far",
        path,
        step=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.87)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args()

    data = scaled_fashion_mnist()
    (x, _), (x_test, _) = data
    repeats = {search: [] for search in SEARCHES}
    scratch = tempfile.mkdtemp(prefix="kf-tuning-")
    try:
        for repeat in range(args.repeats):
            for search in SEARCHES:  # in turn, so drifts in machine speed hit both
                directory = os.path.join(scratch, f"{repeat}-{search}")
                result = run(search, data, args, seed=repeat, directory=directory)
                repeats[search].append({"seed": repeat, **result})
                found = seconds_to_target(result["points"], args.target)
                print(
                    f"repeat {repeat + 1}/{args.repeats} {search}: "
                    + ("not found" if found is None else f"found in {found:.1f} s")
                    + f", search {result['search_seconds']:.1f} s, {result['trials']} trials",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = summarize(repeats, args.target)
    print_table(rows, args.target)
    save_result(
        "tuning",
        {
            "target": args.target,
            "max_trials": args.max_trials,
            "epochs": args.epochs,
            "train_samples": len(x),
            "test_samples": len(x_test),
            "results": rows,
            "repeats": repeats,
        },
        args.out_dir,
    )
    plot(repeats, args.target, os.path.join(args.out_dir, f"tuning_{keras.backend.backend()}.png"))


if __name__ == "__main__":
    main()
