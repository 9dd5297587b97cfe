"""TimingProfiler: where the training time goes, and how much of the hardware it uses.

Per epoch it records wall time, the time spent in validation, steps and
samples per second; in step mode also each step's time (mean, median, p90,
max), the first step (tracing and compilation) apart from the steady state,
and the time between steps (waiting for data). From the model it derives the
FLOPs per sample, layer by layer, and from both the FLOP/s achieved against
the device's peak.

Timing rules: clocks are `time.perf_counter()`; a clock is read only where
Keras has just turned the step's or epoch's logs into Python numbers, which
waits for the device to finish the work.
"""

import csv
import json
import os
import time

import keras

from keras_fastrain import setup_time
from keras_fastrain.callbacks.timing_report import (
    CSV_COLUMNS,
    format_summary,
    require_tensorboard,
    step_statistics,
    training_cost,
    write_scalars,
)
from keras_fastrain.devices import list_devices
from keras_fastrain.distribute.consensus import gather, is_chief
from keras_fastrain.peak import measure_peak_flops
from keras_fastrain.validation import check_choice, check_float, check_int

__all__ = ["TimingProfiler"]

# Why the data-wait split cannot be measured between batch hooks, by backend
# (checked on Keras 3.15): only torch's fit loop fetches the next batch between
# `on_train_batch_end` and the next `on_train_batch_begin`.
DATA_WAIT_UNAVAILABLE = {
    "tensorflow": "on TensorFlow the input iterator's get_next runs inside the "
    "compiled train step, so waiting for data is part of each step's time",
    "jax": "on JAX, Keras's fit loop takes the next batch from the iterator inside "
    "its train function, after on_train_batch_begin, so waiting for data is part "
    "of each step's time",
}
EPOCH_MODE_REASON = "mode='epoch' records no per-step times"


class TimingProfiler(keras.callbacks.Callback):
    """Measures where the training time goes; a drop-in callback for `fit`.

    Two modes, one class. `mode="step"` (the default) times every step through
    the batch hooks, which Keras then calls in step with training.
    `mode="epoch"` reads the clock only at epoch boundaries: its batch hooks
    return at once and its `async_safe` property is true, so Keras keeps
    dispatching steps ahead of the callbacks (on JAX and torch) and the
    profiler adds no work per step, at the price of per-step figures.

    Results: `summary()` returns a dict; at the end of training a compact
    table is printed (`verbose=1`, by the chief worker only); `json_path` and
    `csv_path` save the summary and the per-epoch rows; `log_dir` writes
    TensorBoard scalars. Each epoch's figures are also added to the `logs`
    (`epoch_time`, `train_time`, `validation_time`, `steps_per_sec`, and
    `samples_per_sec` when the batch size is known), so `History` and later
    callbacks see them.

    Batch size: Keras does not tell callbacks the batch size. Give it as
    `batch_size`, or let the code that chose it call `set_batch_size()`
    before `fit` (FastModel does so for `batch_size="auto"`); without either,
    samples per second and achieved FLOP/s are reported as n/a.

    Data wait: on torch, Keras fetches the next batch between one step's
    `on_train_batch_end` and the next `on_train_batch_begin`, so that gap is
    the wait for data (plus other callbacks' batch hooks). On TensorFlow and
    JAX the batch is fetched inside the train step; there the split is
    reported as unavailable, with the reason, never estimated.

    Args:
        mode: One of `"step"`, `"epoch"`. Defaults to `"step"`.
        batch_size: Integer or `None`. The global training batch size, for
            samples per second and achieved FLOP/s. When given, it takes
            precedence over `set_batch_size()`. Defaults to `None`.
        peak_flops: Number of FLOP/s, `"measure"` or `None`. The device peak
            for utilization; `"measure"` runs a short matmul probe at the end
            of the first training run of the process, and reuses its figure
            after that (see `keras_fastrain.peak`). `None` skips utilization.
            Defaults to `"measure"`.
        json_path: String or `None`. Where to save `summary()` as JSON at the
            end of training. Defaults to `None`.
        csv_path: String or `None`. Where to save one row per epoch as CSV.
            Defaults to `None`.
        log_dir: String or `None`. A TensorBoard log folder for per-epoch
            scalars (needs `tensorflow` and `tensorboard` installed). Defaults
            to `None`.
        verbose: Integer, 0 or 1. 1 prints the summary table at the end of
            training. Defaults to `1`.

    Example:

    ```python
    profiler = keras_fastrain.callbacks.TimingProfiler(batch_size=64)
    model.fit(x, y, batch_size=64, epochs=3, callbacks=[profiler])
    print(profiler.summary()["steady_state"]["samples_per_sec"])
    ```
    """

    SUPPORTED_MODES = ("step", "epoch")

    def __init__(
        self,
        *,
        mode="step",
        batch_size=None,
        peak_flops="measure",
        json_path=None,
        csv_path=None,
        log_dir=None,
        verbose=1,
    ):
        super().__init__()
        self.mode = check_choice("mode", mode, self.SUPPORTED_MODES)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, 1)
        if peak_flops not in ("measure", None):
            peak_flops = check_float("peak_flops", peak_flops, low=0, closed=(False, True))
        self.peak_flops = peak_flops
        for name, value in (("json_path", json_path), ("csv_path", csv_path), ("log_dir", log_dir)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(
                    f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
                    "Expected a path or None."
                )
        self.json_path = json_path
        self.csv_path = csv_path
        self.log_dir = log_dir
        if log_dir is not None:
            require_tensorboard()
        self.verbose = check_int("verbose", verbose, minimum=0, maximum=1)
        self._summary = None
        self._writer = None
        # Told by `set_batch_size()` before `fit`; on_train_begin takes it.
        self._next_run_batch_size = None
        self._restored = None  # a state from set_state, for the run that begins
        self._reset()

    @property
    def async_safe(self):
        """Whether Keras may call the batch-end hooks on a worker thread.

        True in epoch mode, where the batch hooks return at once; Keras then
        keeps dispatching steps asynchronously (on backends where it does).
        False in step mode, which reads the clock as each step ends.
        """
        # Keras's CallbackList keeps async dispatch for a callback that
        # overrides batch-end hooks when `async_safe` is true (added in
        # keras-team/keras#20284; checked on Keras 3.15.1).
        return self.mode == "epoch"

    def set_batch_size(self, batch_size):
        """Tells the profiler the global batch size of the next training run.

        For code that chooses the batch itself, such as FastModel with
        `batch_size="auto"`: it calls this before `fit`. The value is taken
        when that run begins (`on_train_begin`) and holds for that run only,
        so a later `fit` whose caller tells nothing reports samples per second
        as n/a rather than with a stale batch. A `batch_size` given to the
        constructor takes precedence: this call then changes nothing.

        Args:
            batch_size: Integer >= 1. The global batch size (summed over all
                workers) of the next training run.

        Raises:
            TypeError: if `batch_size` is not an integer.
            ValueError: if `batch_size` is smaller than 1.

        Example:

        ```python
        profiler = keras_fastrain.callbacks.TimingProfiler()
        profiler.set_batch_size(256)
        model.fit(x, y, batch_size=256, callbacks=[profiler])
        ```
        """
        self._next_run_batch_size = check_int("batch_size", batch_size, 1)

    # --- Per-run state -------------------------------------------------------

    def _reset(self):
        self._setup = []  # the fit's set-up before the first step
        self.epochs = []
        self._run_batch_size = None
        self._peak = None
        self._step_times = []  # per-step seconds of each step group after the first
        self._first_step = None
        self._in_train = False
        self._epoch_start = None
        self._validation_time = 0.0
        self._validation_start = None
        self._epoch_step_times = []
        self._epoch_steps = 0
        self._data_wait = 0.0
        self._last_step_end = None
        self._group_start = None
        self._group_begin = 0

    def _effective_batch_size(self):
        return self.batch_size if self.batch_size is not None else self._run_batch_size

    def on_train_begin(self, logs=None):
        self._reset()
        # set_batch_size() was called before `fit`, so before this hook: the
        # value it left is this run's, and is used up here.
        self._run_batch_size = self._next_run_batch_size
        self._next_run_batch_size = None
        self._summary = None
        self._in_train = True
        now = time.perf_counter()
        self._setup = [
            {"what": i.what, "seconds": max(0.0, min(i.end, now) - i.start)}
            for i in setup_time.intervals(self.model)
            if i.start < now
        ]
        if self._restored is not None:  # a resumed run: the epochs before it count
            self.epochs = [dict(row) for row in self._restored["epochs"]]
            self._restored = None
        if self.log_dir is not None and is_chief():
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(os.fspath(self.log_dir))

    def on_epoch_begin(self, epoch, logs=None):
        self._validation_time = 0.0
        self._epoch_step_times = []
        self._epoch_steps = 0
        self._data_wait = 0.0
        self._epoch_start = time.perf_counter()
        self._last_step_end = self._epoch_start

    def on_train_batch_begin(self, batch, logs=None):
        if self.mode == "epoch":
            return
        now = time.perf_counter()
        self._data_wait += now - self._last_step_end
        self._group_start = now
        self._group_begin = batch

    def on_train_batch_end(self, batch, logs=None):
        if self.mode == "epoch":
            return
        # Keras has made `logs` Python numbers: the step's device work is done.
        now = time.perf_counter()
        # With steps_per_execution > 1 one call covers several steps; Keras
        # reports the group's nominal last index even where the epoch's data
        # ran out before it, so it is capped at the epoch's last step.
        total = self.params.get("steps") if self.params else None
        last = min(batch, total - 1) if total else batch
        steps = last - self._group_begin + 1
        per_step = (now - self._group_start) / steps
        if self._first_step is None:
            self._first_step = now - self._group_start
        else:
            self._step_times.append(per_step)
        self._epoch_step_times.append(per_step)
        self._epoch_steps += steps
        self._last_step_end = now

    def on_test_begin(self, logs=None):
        if self._in_train:
            self._validation_start = time.perf_counter()

    def on_test_end(self, logs=None):
        if self._in_train and self._validation_start is not None:
            self._validation_time += time.perf_counter() - self._validation_start
            self._validation_start = None

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        row = self._epoch_row(epoch, now - self._epoch_start)
        self.epochs.append(row)
        if logs is not None:
            for key in ("epoch_time", "train_time", "validation_time", "steps_per_sec"):
                logs[key] = row[key]
            if row["samples_per_sec"] is not None:
                logs["samples_per_sec"] = row["samples_per_sec"]
        if self._writer is not None:
            write_scalars(self._writer, row)

    def _epoch_row(self, epoch, epoch_time):
        train_time = epoch_time - self._validation_time
        steps = self._epoch_steps or self.params.get("steps")
        steps_per_sec = steps / train_time if steps else None
        batch_size = self._effective_batch_size()
        row = {
            "epoch": epoch + 1,
            "epoch_time": epoch_time,
            "train_time": train_time,
            "validation_time": self._validation_time,
            "steps": steps,
            "steps_per_sec": steps_per_sec,
            "samples_per_sec": steps_per_sec * batch_size if steps_per_sec and batch_size else None,
            **step_statistics(self._epoch_step_times),
            "data_wait": self._data_wait if self._records_data_wait() else None,
        }
        return row

    def get_state(self):
        """The epochs profiled so far (JSON-serializable), so that a run
        resumed through `keras_fastrain.callbacks.BackupAndRestore` reports
        every epoch, before and after the interruption."""
        return {"epochs": [dict(row) for row in self.epochs]}

    def set_state(self, state):
        """Restores what `get_state` returned, for the run that begins (or,
        when called from a callback's `on_train_begin`, is running)."""
        if self._in_train:
            self.epochs = [dict(row) for row in state["epochs"]] + self.epochs
        else:
            self._restored = {"epochs": list(state["epochs"])}

    def on_train_end(self, logs=None):
        self._in_train = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.peak_flops == "measure":
            # Measured once per process and dtype; later runs read the figure.
            self._peak = measure_peak_flops(
                dtype=getattr(self.model.dtype_policy, "compute_dtype", None)
            )
        else:
            self._peak = self.peak_flops
        self._summary = self._build_summary()
        if not is_chief():
            return
        if self.verbose:
            print(format_summary(self._summary))
        if self.json_path is not None:
            with open(self.json_path, "w") as json_file:
                json.dump(self._summary, json_file, indent=2)
        if self.csv_path is not None:
            with open(self.csv_path, "w", newline="") as csv_file:
                writer = csv.DictWriter(csv_file, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(self.epochs)

    # --- Results -------------------------------------------------------------

    def summary(self):
        """Returns the figures of the last training run as a JSON-serializable dict.

        Raises:
            RuntimeError: before any training run has ended.
        """
        if self._summary is None:
            raise RuntimeError("TimingProfiler.summary() is available after `fit` has ended.")
        return self._summary

    def _records_data_wait(self):
        return self.mode == "step" and keras.backend.backend() == "torch"

    def _data_wait_info(self):
        if self.mode == "epoch":
            return {"available": False, "reason": EPOCH_MODE_REASON}
        if not self._records_data_wait():
            reason = DATA_WAIT_UNAVAILABLE.get(
                keras.backend.backend(),
                "this backend's fit loop is not known to fetch data between batch hooks",
            )
            return {"available": False, "reason": reason}
        waited = sum(row["data_wait"] for row in self.epochs)
        train_time = sum(row["train_time"] for row in self.epochs)
        return {
            "available": True,
            "seconds": waited,
            "fraction": waited / train_time if train_time > 0 else None,
            "note": "time between steps: waiting for the next batch, plus other "
            "callbacks' batch hooks",
        }

    def _steady_state(self):
        rows = self.epochs[1:] if len(self.epochs) > 1 else self.epochs
        train_time = sum(row["train_time"] for row in rows)
        steps = sum(row["steps"] or 0 for row in rows)
        steps_per_sec = steps / train_time if steps and train_time > 0 else None
        batch_size = self._effective_batch_size()
        return {
            "epochs": [row["epoch"] for row in rows],
            "steps_per_sec": steps_per_sec,
            "samples_per_sec": steps_per_sec * batch_size if steps_per_sec and batch_size else None,
            **step_statistics(self._step_times),  # the first step is not in it
        }

    def _build_summary(self):
        steady = self._steady_state()
        worker_steps = gather(steady["step_mean"])
        known = [value for value in worker_steps if value]
        return {
            "backend": keras.backend.backend(),
            "devices": list_devices(),
            "precision_policy": self.model.dtype_policy.name,
            "jit_compile": bool(getattr(self.model, "jit_compile", False)),
            "steps_per_execution": getattr(self.model, "steps_per_execution", 1),
            "mode": self.mode,
            "batch_size": self._effective_batch_size(),
            "epochs": self.epochs,
            "setup": {
                "seconds": sum(part["seconds"] for part in self._setup),
                "parts": self._setup,
            },
            "first_step_seconds": self._first_step,
            "first_epoch_seconds": self.epochs[0]["train_time"] if self.epochs else None,
            "steady_state": steady,
            "data_wait": self._data_wait_info(),
            "cost": training_cost(
                self.model,
                steady["samples_per_sec"],
                self._peak,
                "measured matmul probe" if self.peak_flops == "measure" else "given",
            ),
            "workers": {
                "count": len(worker_steps),
                "step_mean": worker_steps,
                "straggler_ratio": max(known) / min(known) if known else None,
            },
        }
