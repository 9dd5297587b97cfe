"""Wall-clock time to a target test accuracy for a small convolutional network
trained with the classic recipe's augmentation, on a Fashion-MNIST subset.

Here augmentation and the input pipeline matter, not only the step: the
classic recipe augments every image in Python on the CPU
(`ImageDataGenerator(rotation_range=20, width_shift_range=0.2,
height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
horizontal_flip=True, fill_mode='nearest').flow(x, y, batch_size=32)`).
The network: Conv2D 32 3x3 relu, MaxPool, Conv2D 64 3x3 relu, MaxPool,
Flatten, Dense 128 relu, Dense 10 softmax; Adam. Methods, in one run, in
turn, repeated:

- `baseline recipe`: `keras.Sequential` fed by `ImageDataGenerator.flow`,
  batch 32, Adam 1e-3;
- `keras-fastrain batch 32`: `FastSequential(augmentation=CLASSIC_RECIPE)`
  (the same transforms, batched, inside the train step) on the arrays,
  batch 32, Adam 1e-3: the augmentation and input pipeline alone;
- `keras-fastrain adaptive`: the same FastSequential from batch 64 (Adam
  1.4e-3, the sqrt rule) doubling every epoch to 512 (`AdaptiveBatchSize`).

The target (0.76 by default) is low because the classic recipe's heavy
augmentation slows what each epoch learns; 12,000 training images keep a
run within a few minutes here.

The test set is scored after every epoch and that time is counted; each run
stops at the target. Reports the median time to the target, the speed-up
against the baseline recipe (ratio of medians), and every repeat.

    KERAS_BACKEND=tensorflow python benchmarks/time_to_accuracy_cnn.py

Needs TensorFlow installed (ImageDataGenerator lives in `tf.keras`) and scipy.
Prints a table and writes benchmarks/results/time_to_accuracy_cnn_<backend>.json
and .png.
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
from keras_fastrain.augmentation import CLASSIC_RECIPE
from keras_fastrain.callbacks import AdaptiveBatchSize
from keras_fastrain.scaling import scaled_learning_rate

METHODS = ("baseline recipe", "keras-fastrain batch 32", "keras-fastrain adaptive")
BASE_BATCH, BASE_RATE = 32, 1e-3
ADAPTIVE_START, ADAPTIVE_MAX = 64, 512
EVALUATION_BATCH = 1024


def conv_layers():
    return [
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]


def compiled(model, learning_rate):
    loss = "sparse_categorical_crossentropy"
    model.compile(keras.optimizers.Adam(learning_rate), loss, metrics=["accuracy"])
    return model


def run(method, data, target, max_epochs, seed):
    """Trains one method from `seed`; returns its (seconds, accuracy) points
    and the batch sizes it trained at."""
    (x, y), test = data
    keras.utils.set_random_seed(seed)
    common = {
        "epochs": max_epochs,
        "validation_data": test,
        "validation_batch_size": EVALUATION_BATCH,
        "verbose": 0,
    }
    if method == "baseline recipe":
        import tensorflow as tf

        model = compiled(keras.Sequential(conv_layers()), BASE_RATE)
        generator = tf.keras.preprocessing.image.ImageDataGenerator(**CLASSIC_RECIPE)
        start = time.perf_counter()
        reach = ReachTarget(target, start)
        flow = generator.flow(x, y, batch_size=BASE_BATCH, seed=seed)
        model.fit(flow, callbacks=[reach], **common)
        return reach.points, [BASE_BATCH]
    batch = BASE_BATCH if method == "keras-fastrain batch 32" else ADAPTIVE_START
    model = compiled(
        FastSequential(conv_layers(), augmentation=CLASSIC_RECIPE),
        scaled_learning_rate(BASE_RATE, BASE_BATCH, batch, rule="sqrt"),
    )
    callbacks = []
    if method == "keras-fastrain adaptive":
        grow = AdaptiveBatchSize(
            schedule={epoch: 2 for epoch in range(1, max_epochs)},
            max_batch_size=ADAPTIVE_MAX,
            learning_rate_rule="sqrt",
        )
        callbacks.append(grow)
    start = time.perf_counter()
    reach = ReachTarget(target, start)
    history = model.fit(x, y, batch_size=batch, callbacks=[*callbacks, reach], **common)
    return reach.points, history.history.get("batch_size", [batch])


def print_table(rows, target):
    print(
        f"\n{'method':<26} {'median s to ' + format(target, 'g'):>16} {'reached':>8} "
        f"{'vs baseline':>12} {'epochs':>10}  seconds per repeat"
    )
    for row in rows:
        median, ratio = row["median_seconds"], row["speedup_vs_baseline"]
        each = ", ".join("-" if t is None else f"{t:.1f}" for t in row["seconds_to_target"])
        epochs = ",".join(str(e) for e in row["epochs"])
        print(
            f"{row['method']:<26} {'-' if median is None else f'{median:.1f}':>16} "
            f"{row['reached']:>8} {'-' if ratio is None else f'{ratio:.1f}x':>12} "
            f"{epochs:>10}  {each}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.76)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--subset", type=int, default=12_000, help="training images used")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args()

    (x, y), (x_test, y_test) = scaled_fashion_mnist()
    data = ((x[: args.subset, ..., None], y[: args.subset]), (x_test[..., None], y_test))
    methods = [m for m in METHODS if m in args.methods.split(",")]
    repeats = {method: [] for method in METHODS}
    for repeat in range(args.repeats):
        for method in methods:  # in turn, so drifts in machine speed hit all alike
            points, batch_sizes = run(method, data, args.target, args.max_epochs, seed=repeat)
            repeats[method].append({"seed": repeat, "points": points, "batch_sizes": batch_sizes})
            reached = seconds_to_target(points, args.target)
            print(
                f"repeat {repeat + 1}/{args.repeats} {method}: "
                + ("not reached" if reached is None else f"{reached:.1f} s")
                + f" in {len(points)} epochs",
                flush=True,
            )
    repeats = {m: r for m, r in repeats.items() if r}
    rows = method_rows(METHODS, {m: repeats.get(m, []) for m in METHODS}, args.target)
    print_table(rows, args.target)
    save_result(
        "time_to_accuracy_cnn",
        {
            "target": args.target,
            "max_epochs": args.max_epochs,
            "train_samples": args.subset,
            "test_samples": len(x_test),
            "augmentation": CLASSIC_RECIPE,
            "results": rows,
            "repeats": repeats,
        },
        args.out_dir,
    )
    plot(repeats, args.target, args.out_dir)


def plot(repeats, target, out_dir):
    curves = [
        (method if number == 0 else None, index, *zip(*result["points"], strict=True))
        for index, method in enumerate(METHODS)
        for number, result in enumerate(repeats.get(method, []))
    ]
    save_accuracy_plot(
        curves,
        target,
        f"Conv net + augmentation to {target:g}, {keras.backend.backend()}, every repeat",
        "wall-clock seconds (test scoring included, log scale)",
        "test accuracy",
        os.path.join(out_dir, f"time_to_accuracy_cnn_{keras.backend.backend()}.png"),
        low=0.6,
    )


if __name__ == "__main__":
    main()
