"""Wall-clock time to a target test accuracy for a small convolutional network
on all 60,000 Fashion-MNIST images: plain Keras against each automatic
choice of keras-fastrain alone and against all of them together.

The network: Conv2D 32 3x3 relu, MaxPool, Conv2D 64 3x3 relu, MaxPool,
Flatten, Dense 128 relu, Dense 10 softmax; Adam. Methods, in one run, in
turn, repeated (each from the same seed in a repeat):

- `plain Keras batch 32`: `keras.Sequential`, batch 32, Adam 1e-3: what a
  user writes, and the baseline of every ratio;
- `fixed batch 128` and `fixed batch 256`: `keras.Sequential` at a larger
  fixed batch, Adam's rate scaled from 1e-3 by the sqrt rule; the better of
  the two is "the best fixed batch";
- `batch_size="auto"`: `FastSequential`, `fit(batch_size="auto")` (goodput
  within its time budget), Adam 1e-3;
- `learning_rate="auto"`: `FastSequential(learning_rate="auto")`, batch 32,
  Adam 1e-3 (the range test, kept only when it pays, then warm-up and decay);
- `ema=True`: `FastSequential(ema=True)`, batch 32, Adam 1e-3: validation
  scores a moving average of the weights (momentum 0.99);
- `label_smoothing=0.1`: `FastSequential(label_smoothing=0.1)`, batch 32,
  Adam 1e-3: the loss trains on labels smoothed by 0.1;
- `selective_backprop=0.5`: `FastSequential(selective_backprop=0.5)`,
  batch 32, Adam 1e-3: each step trains on the half of its batch with the
  highest loss;
- `layer_freezing=0.2`: `FastSequential(layer_freezing=0.2)`, batch 32,
  Adam 1e-3: after a fifth of the fit's 10 epochs the first layers stop
  training, stage by stage (the default, half, would start after the
  epoch plain Keras reaches the target in);
- `keras-fastrain auto`: every automatic choice, as keras-fastrain picks
  them by itself: `fit(batch_size="auto")`, `learning_rate="auto"` and
  `ema="auto"` (the moving average, kept only if the first validation after
  its first 300 steps scores better with it than with the last weights);
- `plain Keras batch 32, pooled` and `progressive_resizing=0.5, pooled`:
  progressive resizing needs a network that takes smaller images, so this
  pair trains the same network with global average pooling in place of
  `Flatten`, plain and with `FastSequential(progressive_resizing=0.5)`; the
  second's ratio is against the first (and it has none against the fixed
  batches, which train the other network). The pooled network does not
  reach 0.90 in 10 epochs (0.87): run the pair with its own target and name,
  `--methods "plain Keras batch 32, pooled|progressive_resizing=0.5, pooled"
  --target 0.85 --name time_to_accuracy_cnn_pooled`.

The default target, 0.90, is one plain Keras at batch 32 needs five
epochs or more for. The test set is scored after every epoch and that time
is counted, as is every search (each run's clock starts before `fit`);
each run stops at the target. Reports the median time to the target, the
ratio against plain Keras (ratio of medians) and against the best fixed
batch, and every repeat.

    KERAS_BACKEND=jax python benchmarks/time_to_accuracy_cnn.py

Prints a table and writes benchmarks/results/time_to_accuracy_cnn_<backend>.json
and .png (`--name` names them otherwise, for a run of some `--methods`).
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
from keras_fastrain.scaling import scaled_learning_rate

PLAIN = "plain Keras batch 32"
FIXED = ("fixed batch 128", "fixed batch 256")
EMA = "ema=True"
SMOOTHING = "label_smoothing=0.1"
SELECTIVE = "selective_backprop=0.5"
FREEZING = "layer_freezing=0.2"
AUTO = "keras-fastrain auto"
POOLED = "plain Keras batch 32, pooled"
RESIZING = "progressive_resizing=0.5, pooled"
METHODS = (
    PLAIN,
    *FIXED,
    'batch_size="auto"',
    'learning_rate="auto"',
    EMA,
    SMOOTHING,
    SELECTIVE,
    FREEZING,
    AUTO,
    POOLED,
    RESIZING,
)
# The pooled pair needs a target of its own (see the module docstring).
DEFAULT_METHODS = tuple(m for m in METHODS if m not in (POOLED, RESIZING))
BASE_BATCH, BASE_RATE = 32, 1e-3
EVALUATION_BATCH = 1024


def conv_layers(pooled=False):
    """The network; `pooled`: global average pooling in place of `Flatten`,
    so that it takes images of any size."""
    return [
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.GlobalAveragePooling2D() if pooled else keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]


def build(method):
    """The compiled model of `method` and the `batch_size` its fit gets."""
    batch = BASE_BATCH
    pooled = method in (POOLED, RESIZING)
    if method in (PLAIN, *FIXED, POOLED):
        if method in FIXED:
            batch = int(method.rsplit(" ", 1)[1])
        model = keras.Sequential(conv_layers(pooled))
    else:
        auto_rate = method in ('learning_rate="auto"', AUTO)
        model = FastSequential(
            conv_layers(pooled),
            learning_rate="auto" if auto_rate else None,
            ema="auto" if method == AUTO else (method == EMA or None),
            label_smoothing=0.1 if method == SMOOTHING else None,
            selective_backprop=0.5 if method == SELECTIVE else None,
            layer_freezing=0.2 if method == FREEZING else None,
            progressive_resizing=0.5 if method == RESIZING else None,
        )
        if method in ('batch_size="auto"', AUTO):
            batch = "auto"
    rate = scaled_learning_rate(BASE_RATE, BASE_BATCH, batch, "sqrt") if method in FIXED else 1e-3
    model.compile(
        keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model, batch


def run(method, data, target, max_epochs, seed):
    """Trains one method from `seed`; returns its (seconds, accuracy) points
    and what keras-fastrain chose."""
    (x, y), test = data
    keras.utils.set_random_seed(seed)
    model, batch = build(method)
    start = time.perf_counter()  # every search counts
    reach = ReachTarget(target, start)
    model.fit(
        x,
        y,
        batch_size=batch,
        epochs=max_epochs,
        validation_data=test,
        validation_batch_size=EVALUATION_BATCH,
        callbacks=[reach],
        verbose=0,
    )
    chosen = {k: str(v) for k, v in getattr(model, "choices", {}).items()}
    search = getattr(model, "batch_size_search", None)
    if search is not None:  # every measurement's numbers and wall time
        chosen["batch_size_search"] = search.to_json()
    return reach.points, chosen


def add_best_fixed(rows):
    """Adds `speedup_vs_best_fixed` to every row: against the faster of the
    fixed larger batches (by median); the pooled pair's ratios are against
    the pooled network's plain run."""
    fixed = [r["median_seconds"] for r in rows if r["method"] in FIXED and r["median_seconds"]]
    best = min(fixed) if fixed else None
    pooled = next((r["median_seconds"] for r in rows if r["method"] == POOLED), None)
    for row in rows:
        median = row["median_seconds"]
        row["speedup_vs_best_fixed"] = best / median if best and median else None
        if row["method"] in (POOLED, RESIZING):
            row["baseline"] = POOLED
            row["speedup_vs_baseline"] = pooled / median if pooled and median else None
            row["speedup_vs_best_fixed"] = None
    return rows


def print_table(rows, target):
    print(
        f"\n{'method':<24} {'median s to ' + format(target, 'g'):>16} {'reached':>8} "
        f"{'vs plain':>9} {'vs best fixed':>14} {'epochs':>10}  seconds per repeat"
    )
    for row in rows:
        median = row["median_seconds"]
        each = ", ".join("-" if t is None else f"{t:.1f}" for t in row["seconds_to_target"])
        epochs = ",".join(str(e) for e in row["epochs"])
        ratios = [row["speedup_vs_baseline"], row["speedup_vs_best_fixed"]]
        plain, best = ("-" if r is None else f"{r:.2f}x" for r in ratios)
        print(
            f"{row['method']:<24} {'-' if median is None else f'{median:.1f}':>16} "
            f"{row['reached']:>8} {plain:>9} {best:>14} {epochs:>10}  {each}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--subset", type=int, default=60_000, help="training images used")
    parser.add_argument(
        "--methods", default="|".join(DEFAULT_METHODS), help="'|'-separated, of " + str(METHODS)
    )
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    parser.add_argument(
        "--name",
        default="time_to_accuracy_cnn",
        help="the results' name: a run of some methods can be saved beside the full one",
    )
    args = parser.parse_args()

    (x, y), (x_test, y_test) = scaled_fashion_mnist()
    data = ((x[: args.subset, ..., None], y[: args.subset]), (x_test[..., None], y_test))
    methods = [m for m in METHODS if m in args.methods.split("|")]
    repeats = {method: [] for method in METHODS}
    for repeat in range(args.repeats):
        for method in methods:  # in turn, so drifts in machine speed hit all alike
            points, chosen = run(method, data, args.target, args.max_epochs, seed=repeat)
            repeats[method].append({"seed": repeat, "points": points, "choices": chosen})
            reached = seconds_to_target(points, args.target)
            print(
                f"repeat {repeat + 1}/{args.repeats} {method}: "
                + ("not reached" if reached is None else f"{reached:.1f} s")
                + f" in {len(points)} epochs; test accuracy by epoch "
                + " ".join(f"{accuracy:.4f}" for _, accuracy in points),
                flush=True,
            )
            for line in chosen.values():
                if line.startswith(("batch_size", "learning_rate", "jit_compile")):
                    print(f"    {line}", flush=True)
    ran = [m for m in METHODS if repeats[m]]
    rows = add_best_fixed(method_rows(ran, {m: repeats[m] for m in ran}, args.target))
    print_table(rows, args.target)
    save_result(
        args.name,
        {
            "target": args.target,
            "max_epochs": args.max_epochs,
            "train_samples": args.subset,
            "test_samples": len(x_test),
            "augmentation": None,
            "results": rows,
            "repeats": {m: repeats[m] for m in ran},
        },
        args.out_dir,
    )
    plot(repeats, args.target, args.out_dir, args.name)


def plot(repeats, target, out_dir, name):
    curves = [
        (method if number == 0 else None, index, *zip(*result["points"], strict=True))
        for index, method in enumerate(METHODS)
        for number, result in enumerate(repeats.get(method, []))
    ]
    save_accuracy_plot(
        curves,
        target,
        f"Conv net on Fashion-MNIST to {target:g}, {keras.backend.backend()}, every repeat",
        "wall-clock seconds (searches and test scoring included, log scale)",
        "test accuracy",
        os.path.join(out_dir, f"{name}_{keras.backend.backend()}.png"),
        low=0.8,
    )


if __name__ == "__main__":
    main()
