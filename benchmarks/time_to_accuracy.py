"""Wall-clock time to a target test accuracy on Fashion-MNIST, by batch strategy.

Trains the baseline recipe's model (Flatten, Dense 128 relu, Dense 10
softmax, Adam) from the same seed until its test accuracy reaches the target
(0.875 by default), with the test set scored after every epoch and that time
counted. Methods, in one run, in turn, repeated to show the spread:

- `baseline recipe`: `keras.Sequential`, batch 32, Adam 1e-3 (the classic
  recipe);
- `fixed 256`, `fixed 512`: `keras.Sequential` at a larger fixed batch, the
  learning rate scaled by the square-root rule (the usual hand tuning);
- `keras-fastrain adaptive`: `FastSequential`, starting at batch 256 with the
  sqrt-scaled rate, `AdaptiveBatchSize` doubling the batch every epoch (the
  rate following by the sqrt rule) up to 2048, `EarlyStopping(target=...)`;
- `keras-fastrain noise scale`: the same, but the batch doubles while the
  gradient noise scale measured after each epoch is at least twice the
  batch (`AdaptiveBatchSize(noise_scale=True)`), up to 2048.

Past 2048 this model gains little speed on a 2-core CPU while each epoch
learns less: the batch-size search (`BatchSizeFinder(min_batch_size=256)`),
which the script runs once at the start and reports with its cost, measured
about 300k samples/s at 2048 and 350k at 16384 (its 5% margin picks 4096).
The search is not counted in the adaptive runs' times: it is a one-off per
model and machine (here it costs more than the whole adaptive run;
`max_batch_size="auto"` would pay it in every run).

Reports the median time to the target per method, its speed-up against the
baseline recipe and against the best fixed batch (ratios of medians from the
same run), and every repeat.

    KERAS_BACKEND=tensorflow python benchmarks/time_to_accuracy.py

Prints a table and writes benchmarks/results/time_to_accuracy_<backend>.json
and time_to_accuracy_<backend>.png.
"""

import argparse
import os
import time

import keras
from common import (
    RESULTS_DIR,
    ReachTarget,
    method_rows,
    save_accuracy_plot,
    save_result,
    scaled_fashion_mnist,
    seconds_to_target,
)

from keras_fastrain import FastSequential
from keras_fastrain.batching import BatchSizeFinder
from keras_fastrain.callbacks import AdaptiveBatchSize, EarlyStopping
from keras_fastrain.demo import baseline_layers
from keras_fastrain.scaling import scaled_learning_rate

BASE_BATCH, BASE_RATE = 32, 1e-3
ADAPTIVE_START = 256
ADAPTIVE_MAX = 2048
EVALUATION_BATCH = 2048


def compiled(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def run(method, data, target, max_epochs, seed, first_batch=ADAPTIVE_START, largest=ADAPTIVE_MAX):
    """Trains one method from `seed`; returns its (seconds, accuracy) points."""
    (x, y), test = data
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    reach = ReachTarget(target, start)
    common = {
        "epochs": max_epochs,
        "validation_data": test,
        "validation_batch_size": EVALUATION_BATCH,
        "verbose": 0,
    }
    if method.startswith("keras-fastrain"):
        rate = scaled_learning_rate(BASE_RATE, BASE_BATCH, first_batch, rule="sqrt")
        model = compiled(FastSequential(baseline_layers()), rate)
        if method == "keras-fastrain noise scale":
            grow = AdaptiveBatchSize(noise_scale=True, max_batch_size=largest)
        else:
            grow = AdaptiveBatchSize(
                schedule={epoch: 2 for epoch in range(1, max_epochs)},
                max_batch_size=largest,
                learning_rate_rule="sqrt",
            )
        stop = EarlyStopping(monitor="val_accuracy", target=target, patience=max_epochs)
        model.fit(x, y, batch_size=first_batch, callbacks=[grow, reach, stop], **common)
        return reach.points, {"batch_sizes": [b for _, b, _ in grow.changes]}
    batch = {"baseline recipe": BASE_BATCH, "fixed 256": 256, "fixed 512": 512}[method]
    rate = scaled_learning_rate(BASE_RATE, BASE_BATCH, batch, rule="sqrt")
    model = compiled(keras.Sequential(baseline_layers()), rate)
    model.fit(x, y, batch_size=batch, callbacks=[reach], **common)
    return reach.points, {}


def search_once(data):
    """The batch-size search on a fresh FastSequential; its result and cost."""
    (x, y), _ = data
    keras.utils.set_random_seed(0)
    model = compiled(FastSequential(baseline_layers()), BASE_RATE)
    start = time.perf_counter()
    model.fit(x, y, batch_size=BatchSizeFinder(min_batch_size=ADAPTIVE_START), epochs=0)
    seconds = time.perf_counter() - start
    search = model.batch_size_search
    print(f"\nBatch-size search ({seconds:.1f} s):\n{search.table()}\n", flush=True)
    return {"seconds": seconds, **search.to_dict()}


def summarize(methods, repeats, target):
    rows = method_rows(methods, repeats, target)
    by_name = {row["method"]: row["median_seconds"] for row in rows}
    fixed = [by_name[m] for m in ("fixed 256", "fixed 512") if by_name.get(m)]
    best_fixed = min(fixed) if fixed else None
    base = by_name.get("baseline recipe")  # --methods may leave it out, or not first
    for row in rows:
        median = row["median_seconds"]
        row["speedup_vs_baseline"] = base / median if median and base else None
        row["speedup_vs_best_fixed"] = best_fixed / median if median and best_fixed else None
    return rows


def print_table(rows, target):
    print(
        f"\n{'method':<28} {'median s to ' + format(target, 'g'):>16} {'reached':>8} "
        f"{'vs baseline':>12} {'vs best fixed':>14}  seconds per repeat"
    )
    for row in rows:
        median = row["median_seconds"]
        ratios = [
            "-" if row[key] is None else f"{row[key]:.1f}x"
            for key in ("speedup_vs_baseline", "speedup_vs_best_fixed")
        ]
        each = ", ".join("-" if t is None else f"{t:.1f}" for t in row["seconds_to_target"])
        print(
            f"{row['method']:<28} {'-' if median is None else f'{median:.1f}':>16} "
            f"{row['reached']:>8} {ratios[0]:>12} {ratios[1]:>14}  {each}"
        )


def plot(methods, repeats, target, path):
    curves = []
    for index, method in enumerate(methods):
        for number, result in enumerate(repeats[method]):
            seconds, accuracy = zip(*result["points"], strict=True)
            curves.append((method if number == 0 else None, index, seconds, accuracy))
    save_accuracy_plot(
        curves,
        target,
        f"Fashion-MNIST MLP to {target:g}, {keras.backend.backend()}, every repeat",
        "wall-clock seconds (test scoring included, log scale)",
        "test accuracy",
        path,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.875)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument(
        "--methods",
        default=(
            "baseline recipe,fixed 256,fixed 512,keras-fastrain adaptive,keras-fastrain noise scale"
        ),
        help="comma-separated",
    )
    parser.add_argument("--adaptive-start", type=int, default=ADAPTIVE_START)
    parser.add_argument("--adaptive-max", type=int, default=ADAPTIVE_MAX)
    parser.add_argument("--no-search", action="store_true", help="skip the one-off search")
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args()

    data = scaled_fashion_mnist()
    (x, _), (x_test, _) = data
    methods = args.methods.split(",")
    search = None if args.no_search else search_once(data)
    repeats = {method: [] for method in methods}
    for repeat in range(args.repeats):
        for method in methods:  # in turn, so drifts in machine speed hit all alike
            points, details = run(
                method,
                data,
                args.target,
                args.max_epochs,
                seed=repeat,
                first_batch=args.adaptive_start,
                largest=args.adaptive_max,
            )
            repeats[method].append({"seed": repeat, "points": points, **details})
            reached = seconds_to_target(points, args.target)
            print(
                f"repeat {repeat + 1}/{args.repeats} {method}: "
                + ("not reached" if reached is None else f"{reached:.1f} s")
                + f" in {len(points)} epochs",
                flush=True,
            )
    rows = summarize(methods, repeats, args.target)
    print_table(rows, args.target)
    save_result(
        "time_to_accuracy",
        {
            "target": args.target,
            "max_epochs": args.max_epochs,
            "train_samples": len(x),
            "test_samples": len(x_test),
            "adaptive": {"start": args.adaptive_start, "max": args.adaptive_max, "rule": "sqrt"},
            "search": search,
            "results": rows,
            "repeats": repeats,
        },
        args.out_dir,
    )
    plot(
        methods,
        repeats,
        args.target,
        os.path.join(args.out_dir, f"time_to_accuracy_{keras.backend.backend()}.png"),
    )


if __name__ == "__main__":
    main()
