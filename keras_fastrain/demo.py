"""The demo: the classic Keras recipe on Fashion-MNIST, then the keras-fastrain way.

Both runs train the same model (Flatten, Dense 128 relu, Dense 10 softmax,
Adam, sparse categorical cross-entropy) on the same data from the same seed.
After every epoch the training clock pauses while the model is scored on the
test set, so the time axis holds training time only. The result is a table of
time to a target test accuracy, final test accuracy and samples per second,
a JSON file with every point, and a PNG plot of test accuracy against time.
"""

import dataclasses
import datetime
import json
import os
import platform
import time

import keras

from keras_fastrain._version import __version__
from keras_fastrain.backend import backend_version
from keras_fastrain.callbacks.adaptive_batch_size import AdaptiveBatchSize
from keras_fastrain.datasets import load_fashion_mnist
from keras_fastrain.model import FastSequential
from keras_fastrain.scaling import scaled_learning_rate
from keras_fastrain.validation import check_float, check_int

__all__ = [
    "baseline_layers",
    "baseline_model",
    "demo_recipes",
    "format_table",
    "plot_results",
    "Recipe",
    "run_demo",
    "run_recipe",
    "RunResult",
    "speedup_line",
]

BASELINE_BATCH_SIZE = 32
BASELINE_LEARNING_RATE = 1e-3
FAST_BATCH_SIZE = 256
FAST_MAX_BATCH_SIZE = 2048
EVALUATION_BATCH_SIZE = 2048


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one side of the demo trains.

    Attributes:
        name: String. The label in the table and the plot.
        batch_size: Integer. The training batch size.
        learning_rate: Float. Adam's learning rate.
        how: String. One line on what this side does.
        fast_model: Bool. Whether the model is a `FastModel` (which decides
            jit_compile, steps_per_execution, precision and devices) rather
            than a `keras.Sequential` with Keras's defaults. Defaults to
            `False`.
        grow_to: Integer or `None`. When set, `AdaptiveBatchSize` doubles
            the batch every epoch up to it, the learning rate following the
            sqrt rule. Defaults to `None` (a fixed batch).
    """

    name: str
    batch_size: int
    learning_rate: float
    how: str
    fast_model: bool = False
    grow_to: int | None = None


def demo_recipes():
    """Returns the two sides of the demo: plain Keras, then keras-fastrain."""
    fast_rate = scaled_learning_rate(
        BASELINE_LEARNING_RATE, BASELINE_BATCH_SIZE, FAST_BATCH_SIZE, rule="sqrt"
    )
    return (
        Recipe(
            "plain Keras",
            BASELINE_BATCH_SIZE,
            BASELINE_LEARNING_RATE,
            "batch 32, Adam lr 1e-3, Keras's compile defaults (the classic recipe)",
        ),
        Recipe(
            "keras-fastrain",
            FAST_BATCH_SIZE,
            fast_rate,
            f"FastSequential, batch {FAST_BATCH_SIZE} doubling every epoch up to "
            f"{FAST_MAX_BATCH_SIZE}, lr {fast_rate:.3g} then following the sqrt rule",
            fast_model=True,
            grow_to=FAST_MAX_BATCH_SIZE,
        ),
    )


@dataclasses.dataclass
class RunResult:
    """What one side of the demo measured.

    Attributes:
        recipe: The `Recipe` that was run.
        seconds: List of floats. Training time (test scoring excluded) at the
            end of each epoch.
        test_accuracy: List of floats. Test accuracy at the end of each epoch.
        samples_per_epoch: Integer. Training samples seen per epoch.
    """

    recipe: Recipe
    seconds: list
    test_accuracy: list
    samples_per_epoch: int

    def time_to_target(self, target):
        """Training seconds until test accuracy first reached `target`, or `None`."""
        for seconds, accuracy in zip(self.seconds, self.test_accuracy, strict=True):
            if accuracy >= target:
                return seconds
        return None

    @property
    def samples_per_second(self):
        return self.samples_per_epoch * len(self.seconds) / self.seconds[-1]

    def to_dict(self, target):
        return {
            **dataclasses.asdict(self.recipe),
            "epochs": len(self.seconds),
            "seconds": self.seconds,
            "test_accuracy": self.test_accuracy,
            "time_to_target": self.time_to_target(target),
            "final_test_accuracy": self.test_accuracy[-1],
            "samples_per_second": self.samples_per_second,
        }


class _TestAccuracyClock(keras.callbacks.Callback):
    """Scores the model on the test set after each epoch, off the training clock."""

    def __init__(self, x_test, y_test, on_epoch):
        super().__init__()
        self.x_test = x_test
        self.y_test = y_test
        self.on_epoch = on_epoch

    def on_train_begin(self, logs=None):
        self.seconds = []
        self.test_accuracy = []
        self._paused = 0.0
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Keras has turned this epoch's logs into numbers by now, so the
        # device work of the epoch is done when the clock is read.
        stop = time.perf_counter()
        self.seconds.append(stop - self._start - self._paused)
        _, accuracy = self.model.evaluate(
            self.x_test, self.y_test, batch_size=EVALUATION_BATCH_SIZE, verbose=0
        )
        self.test_accuracy.append(float(accuracy))
        self.on_epoch(epoch, self.seconds[-1], self.test_accuracy[-1])
        self._paused += time.perf_counter() - stop


def baseline_layers():
    """The classic recipe's layers: Flatten, Dense 128 relu, Dense 10 softmax."""
    return [
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]


def baseline_model(learning_rate=BASELINE_LEARNING_RATE, fast_model=False):
    """Returns the classic recipe's model, compiled: the one the demo trains.

    With `fast_model=True` the same layers make a `FastSequential`, whose
    compile decides jit_compile, steps_per_execution, precision and devices
    (logged once); otherwise a `keras.Sequential` with Keras's defaults.
    """
    model_class = FastSequential if fast_model else keras.Sequential
    model = model_class(baseline_layers())
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def run_recipe(recipe, data, epochs, seed=0, log=print):
    """Trains the baseline model with `recipe` and returns a `RunResult`."""
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model = baseline_model(recipe.learning_rate, recipe.fast_model)

    def on_epoch(epoch, seconds, accuracy):
        log(
            f"  [{recipe.name}] epoch {epoch + 1}/{epochs}  "
            f"train time {seconds:6.1f} s  test accuracy {accuracy:.4f}"
        )

    clock = _TestAccuracyClock(x_test, y_test, on_epoch)
    callbacks = [clock]
    if recipe.grow_to is not None and epochs > 1:
        schedule = {epoch: 2 for epoch in range(1, epochs)}
        callbacks.insert(0, AdaptiveBatchSize(schedule=schedule, max_batch_size=recipe.grow_to))
    log(f"Training {recipe.name}: {recipe.how}")
    model.fit(
        x_train,
        y_train,
        batch_size=recipe.batch_size,
        epochs=epochs,
        callbacks=callbacks,
        verbose=0,
    )
    return RunResult(recipe, clock.seconds, clock.test_accuracy, len(x_train))


def format_table(results, target):
    """Returns the side-by-side table of `results` (a list of `RunResult`)."""
    header = (
        f"time to {target:g} test acc",
        "final test acc",
        "samples/s",
        "epochs",
    )
    rows = []
    for result in results:
        reached = result.time_to_target(target)
        rows.append(
            (
                result.recipe.name,
                "not reached" if reached is None else f"{reached:.1f} s",
                f"{result.test_accuracy[-1]:.4f}",
                f"{result.samples_per_second:,.0f}",
                str(len(result.seconds)),
            )
        )
    table = [("", *header), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) + 1)]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def speedup_line(baseline, fast, target):
    """Returns one sentence comparing the two runs' time to `target`."""
    base_time = baseline.time_to_target(target)
    fast_time = fast.time_to_target(target)
    if fast_time is None:
        return f"{fast.recipe.name} did not reach {target:g} test accuracy."
    if base_time is None:
        return (
            f"{fast.recipe.name} reached {target:g} test accuracy in "
            f"{fast_time:.1f} s; {baseline.recipe.name} did not reach it."
        )
    times = f"({fast_time:.1f} s against {base_time:.1f} s)"
    if fast_time > base_time:  # a loss is worded as one
        return (
            f"{fast.recipe.name} reached {target:g} test accuracy later than "
            f"{baseline.recipe.name}: in {_ratio(fast_time / base_time)} its time {times}."
        )
    return (
        f"{fast.recipe.name} reached {target:g} test accuracy "
        f"{_ratio(base_time / fast_time)} sooner {times}."
    )


def _ratio(value):
    """`1.04x` near 1 (where one decimal would read `1.0x`), `6.4x` above 2."""
    return f"{value:.2f}x" if value < 2 else f"{value:.1f}x"


def plot_results(results, target, path):
    """Saves a PNG of test accuracy against training time for each run."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for result in results:
        axes.plot(result.seconds, result.test_accuracy, marker="o", label=result.recipe.name)
        reached = result.time_to_target(target)
        if reached is not None:
            axes.axvline(reached, linestyle=":", color=axes.lines[-1].get_color())
    axes.axhline(target, linestyle="--", color="grey", label=f"target {target:g}")
    axes.set_xlim(left=0)
    axes.set_xlabel("training time (s, test scoring excluded)")
    axes.set_ylabel("test accuracy")
    axes.set_title(f"Fashion-MNIST, Dense 128 MLP, Keras {keras.__version__}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ImportError(
            'The demo\'s plot needs matplotlib: run `pip install "keras-fastrain[demo]"`.'
        ) from error


def _subset(data, subset):
    (x_train, y_train), (x_test, y_test) = data
    if subset is None:
        return data
    test_size = max(subset // 6, 1)
    return (x_train[:subset], y_train[:subset]), (x_test[:test_size], y_test[:test_size])


def run_demo(target=0.87, epochs=10, out_dir="keras-fastrain-demo", subset=None, seed=0, log=print):
    """Runs the demo and writes `demo.json` and `demo.png` into `out_dir`.

    Args:
        target: Float in (0, 1]. The test accuracy to time. Defaults to `0.87`.
        epochs: Integer >= 1. Epochs for each side. Defaults to `10`.
        out_dir: String. Where to write the results. Defaults to
            `"keras-fastrain-demo"`.
        subset: Integer >= 1 or `None`. Train on the first `subset` training
            images (and test on a sixth as many) for a quick run. Defaults to
            `None`, the full 60000/10000.
        seed: Integer >= 0. Seed of the weights and shuffles. Defaults to `0`.
        log: Callable taking a string. Where progress goes. Defaults to `print`.

    Returns:
        The dict written to `demo.json`.

    Example:

    ```python
    summary = keras_fastrain.demo.run_demo(epochs=2, subset=2000, target=0.7)
    ```
    """
    target = check_float("target", target, 0, 1, closed=(False, True))
    epochs = check_int("epochs", epochs, minimum=1)
    if subset is not None:
        subset = check_int("subset", subset, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(
            f"Invalid value for argument `out_dir`. Received: out_dir={out_dir!r}. Expected a path."
        )
    _require_matplotlib()
    os.makedirs(out_dir, exist_ok=True)

    (x_train, y_train), (x_test, y_test) = _subset(load_fashion_mnist(), subset)
    data = (x_train / 255.0).astype("float32"), y_train
    test = (x_test / 255.0).astype("float32"), y_test
    log(
        f"Fashion-MNIST: {len(x_train)} training and {len(x_test)} test images; "
        f"Keras {keras.__version__} on {keras.backend.backend()}; "
        f"target test accuracy {target:g}, {epochs} epochs each."
    )
    results = [
        run_recipe(recipe, (data, test), epochs, seed=seed, log=log) for recipe in demo_recipes()
    ]
    summary = {
        "keras_fastrain_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "backend_version": backend_version(keras.backend.backend()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": target,
        "train_samples": len(x_train),
        "test_samples": len(x_test),
        "runs": [result.to_dict(target) for result in results],
    }
    json_path = os.path.join(out_dir, "demo.json")
    png_path = os.path.join(out_dir, "demo.png")
    with open(json_path, "w") as json_file:
        json.dump(summary, json_file, indent=2)
    plot_results(results, target, png_path)
    log("")
    log(format_table(results, target))
    log("")
    log(speedup_line(results[0], results[1], target))
    log(f"Saved {json_path} and {png_path}.")
    return summary
