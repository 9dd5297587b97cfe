"""What every benchmark records beside its figures, and where it saves them."""

import datetime
import json
import os
import platform
import statistics
import time

import keras

import keras_fastrain
from keras_fastrain.backend import backend_version

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def environment():
    """Returns the backend, versions, machine and date of this run."""
    return {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "backend_version": backend_version(keras.backend.backend()),
        "keras_fastrain_version": keras_fastrain.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def save_result(name, result, out_dir=RESULTS_DIR):
    """Writes `{"benchmark": name, **environment(), **result}` to `<name>_<backend>.json`."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}_{keras.backend.backend()}.json")
    with open(path, "w") as json_file:
        json.dump({"benchmark": name, **environment(), **result}, json_file, indent=2)
    print(f"Saved {path}.")
    return path


def save_accuracy_plot(curves, target, title, xlabel, ylabel, path, step=False, low=0.8):
    """Saves a PNG of accuracy curves against wall-clock seconds (log scale)
    with the target as a dashed line.

    Args:
        curves: List of `(label or None, color index, seconds, accuracies)`.
        step: Bool. Draw steps (a best-so-far) instead of points and lines.
        low: Number. The bottom of the accuracy axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7.5, 4.5))
    for label, color, seconds, accuracy in curves:
        style = {"color": f"C{color}", "alpha": 0.8, "label": label}
        if step:
            axes.step(seconds, accuracy, where="post", **style)
        else:
            axes.plot(seconds, accuracy, marker="o", ms=3, **style)
    axes.axhline(target, linestyle="--", color="grey", label=f"target {target:g}")
    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(low, max(low + 0.1, target + 0.03))
    axes.set_title(title)
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    print(f"Saved {path}.")


def scaled_fashion_mnist():
    """Fashion-MNIST as float32 in [0, 1]: `((x, y), (x_test, y_test))`."""
    (x, y), (x_test, y_test) = keras_fastrain.load_fashion_mnist()
    return ((x / 255.0).astype("float32"), y), ((x_test / 255.0).astype("float32"), y_test)


def seconds_to_target(points, target):
    """The first seconds in `(seconds, accuracy)` points whose accuracy
    reached `target`, or `None`."""
    return next((seconds for seconds, accuracy in points if accuracy >= target), None)


class ReachTarget(keras.callbacks.Callback):
    """Records (wall seconds, test accuracy) after every epoch's validation
    (on the test set, counted in the time) and stops at the target."""

    def __init__(self, target, start):
        super().__init__()
        self.target, self.start, self.points = target, start, []

    def on_epoch_end(self, epoch, logs=None):
        self.points.append((time.perf_counter() - self.start, float(logs["val_accuracy"])))
        if logs["val_accuracy"] >= self.target:
            self.model.stop_training = True


def method_rows(methods, repeats, target):
    """One row per method from its repeats' `(seconds, accuracy)` points:
    the seconds to `target` in each repeat, their median over the repeats
    that reached it, how many did, the epochs each ran, and
    `speedup_vs_baseline` against the first method's median."""
    rows = []
    for method in methods:
        times = [seconds_to_target(r["points"], target) for r in repeats[method]]
        reached = [t for t in times if t is not None]
        rows.append(
            {
                "method": method,
                "seconds_to_target": times,
                "median_seconds": statistics.median(reached) if reached else None,
                "reached": f"{len(reached)}/{len(times)}",
                "epochs": [len(r["points"]) for r in repeats[method]],
            }
        )
    base = rows[0]["median_seconds"] if rows else None
    for row in rows:
        median = row["median_seconds"]
        row["speedup_vs_baseline"] = base / median if base and median else None
    return rows
