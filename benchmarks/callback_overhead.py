"""What each keras-fastrain callback costs in training time.

Trains the baseline recipe's model (Flatten, Dense 128 relu, Dense 10
softmax, Adam) on Fashion-MNIST at batch 256, one epoch per `fit` call, with
no callback and with each callback in turn. The configurations alternate
within every round, so that the machine's drift hits them all alike; the
figures reported are each configuration's median and best epoch time
against those without callbacks, from the same run; a second configuration
without callbacks (the A/A control) shows how large the noise is.

    KERAS_BACKEND=jax python benchmarks/callback_overhead.py --rounds 20

Prints a table and writes benchmarks/results/callback_overhead_<backend>.json.
"""

import argparse
import statistics
import time

import keras
from common import RESULTS_DIR, save_result

import keras_fastrain
from keras_fastrain.callbacks import EarlyStopping, TimingProfiler
from keras_fastrain.demo import baseline_model

BATCH_SIZE = 256
CONFIGURATIONS = {
    "no callback": lambda: [],
    # The same again: how far two identical configurations differ here, i.e.
    # the noise floor against which the overheads below are read.
    "no callback (A/A control)": lambda: [],
    "TimingProfiler(mode='epoch')": lambda: [
        TimingProfiler(mode="epoch", batch_size=BATCH_SIZE, peak_flops=None, verbose=0)
    ],
    "TimingProfiler(mode='step')": lambda: [
        TimingProfiler(mode="step", batch_size=BATCH_SIZE, peak_flops=None, verbose=0)
    ],
    "EarlyStopping(patience, target)": lambda: [
        EarlyStopping(monitor="loss", patience=100, target=0.0)
    ],
    "EarlyStopping(max_duration)": lambda: [
        EarlyStopping(monitor="loss", patience=100, max_duration=3600)
    ],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--subset", type=int, default=None, help="training images (default all)")
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args()

    (x, y), _ = keras_fastrain.load_fashion_mnist()
    x = (x[: args.subset] / 255.0).astype("float32")
    y = y[: args.subset]
    keras.utils.set_random_seed(0)
    model = baseline_model()
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0)  # trace and warm up

    times = {name: [] for name in CONFIGURATIONS}
    for round_index in range(args.rounds):
        names = list(CONFIGURATIONS)
        # Rotate the order each round so that no configuration always runs first.
        names = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in names:
            callbacks = CONFIGURATIONS[name]()
            start = time.perf_counter()
            model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, callbacks=callbacks, verbose=0)
            times[name].append(time.perf_counter() - start)
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)

    base_median = statistics.median(times["no callback"])
    base_best = min(times["no callback"])
    rows = []
    for name, values in times.items():
        rows.append(
            {
                "configuration": name,
                "median_epoch_seconds": statistics.median(values),
                "best_epoch_seconds": min(values),
                "overhead_median": statistics.median(values) / base_median - 1,
                "overhead_best": min(values) / base_best - 1,
                "seconds": values,
            }
        )
    width = max(len(row["configuration"]) for row in rows)
    print(f"\n{'configuration':<{width}}  median epoch s  overhead  best epoch s  overhead")
    for row in rows:
        print(
            f"{row['configuration']:<{width}}  {row['median_epoch_seconds']:>14.3f}  "
            f"{row['overhead_median']:>+8.1%}  {row['best_epoch_seconds']:>12.3f}  "
            f"{row['overhead_best']:>+8.1%}"
        )
    save_result(
        "callback_overhead",
        {
            "batch_size": BATCH_SIZE,
            "train_samples": len(x),
            "rounds": args.rounds,
            "results": rows,
        },
        args.out_dir,
    )


if __name__ == "__main__":
    main()
