"""EarlyStopping: Keras's arguments, plus a target, a time budget and divergence checks.

Stopping as soon as the model is good enough is the cheapest speed-up there
is. This callback takes every argument of `keras.callbacks.EarlyStopping` with
the same meaning and defaults, and adds four ways to stop: at a target value
of the monitored metric, on a wall-clock budget (checked after every batch),
when the metric passes a divergence threshold, and when the metric or the loss
stops being finite. It records why and when it stopped.
"""

import difflib
import math
import time
import warnings

import keras
import numpy as np

from keras_fastrain import _keras_internals, distribute, setup_time
from keras_fastrain.callbacks.metric_direction import infer_mode
from keras_fastrain.callbacks.stop_reason import StopReason
from keras_fastrain.distribute.consensus import any_worker
from keras_fastrain.validation import (
    check_bool,
    check_choice,
    check_duration,
    check_flag,
    check_float,
    check_int,
    check_optional_finite,
)

__all__ = ["EarlyStopping"]


def _scalar(key, value):
    """A logged value as a float: a one-element array is its one value."""
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(
            f"EarlyStopping monitors `{key}`, which logs {array.size} values (shape "
            f"{array.shape}), not one. Monitor a single number: for F1Score or "
            "FBetaScore pass average='macro', 'micro' or 'weighted'."
        )
    return float(array.reshape(()))


class EarlyStopping(keras.callbacks.EarlyStopping):
    """Stops training when the model is good enough, stuck, broken or out of time.

    A `keras.callbacks.EarlyStopping` (a subclass): every argument keeps its
    meaning and default, and so do its attributes (`monitor_op`, `best`,
    `wait`, `stopped_epoch`, `best_weights`). In addition training stops, at
    the first of these:

    - `target`: the monitored value reaches the target (stop at 88% accuracy,
      not 3 epochs later). The training time until then is recorded.
    - `max_duration`: the wall-clock budget since `fit` began is spent; it is
      checked after every batch, so training ends within a batch or two of
      the budget rather than at the end of an epoch.
    - `divergence_threshold`: the monitored value is worse than the threshold.
    - `check_finite`: the monitored value or the loss is NaN or infinite.

    After training, `stopped_reason` (a `StopReason`, or `None`),
    `stopped_epoch` and `time_to_target` say what happened; with `verbose=1`
    it is said once. `get_state()` / `set_state()` carry what an interrupted
    run needs (best value, wait counter, elapsed time budget) as JSON;
    `keras_fastrain.callbacks.BackupAndRestore` saves and restores it.

    A monitored metric that logs a one-element array (`F1Score`,
    `FBetaScore` with an `average`) is read as its one value. A `monitor`
    that is in none of the first epoch's logs is an error naming the closest
    key (a typo would otherwise train to the end); one missing only because
    validation did not run that epoch (`validation_freq`) warns, as in Keras.

    Decisions go through `keras_fastrain.distribute.consensus`, so in a
    distributed run every worker stops at the same step.

    Args:
        monitor: String. The quantity to monitor. Defaults to `"val_loss"`.
        min_delta: Number. The smallest absolute change that counts as an
            improvement. Defaults to `0`.
        patience: Integer >= 0. Epochs with no improvement before stopping.
            Defaults to `0`.
        verbose: Integer >= 0. 0 is silent; 1 or more says why training
            stopped. Defaults to `0`.
        mode: One of `"auto"`, `"min"`, `"max"`. Whether the monitored value
            should go down or up; `"auto"` infers it from the name (`loss`,
            `mse`, ... go down; `accuracy`, `auc`, `mean_io_u`, ... go up),
            else, as Keras, from the compiled metric of that name at the end
            of the first epoch, and raises if neither tells. Defaults to
            `"auto"`.
        baseline: Number or `None`. Training stops if the model does not
            improve on it within `patience` epochs. Defaults to `None`.
        restore_best_weights: Bool (or 0 / 1). Whether to restore the weights
            of the best epoch when training ends. Defaults to `False`.
        start_from_epoch: Integer >= 0. Epochs to wait before improvement is
            monitored (the target, time, divergence and finiteness checks
            apply from the start). Defaults to `0`.
        target: Number or `None`. Stop as soon as the monitored value reaches
            it (`>=` in max mode, `<=` in min mode). Defaults to `None`.
        divergence_threshold: Number or `None`. Stop as soon as the monitored
            value is worse than it (above in min mode, below in max mode).
            Defaults to `None`.
        check_finite: Bool. Stop when the monitored value or the loss is NaN
            or infinite. Defaults to `True`.
        max_duration: Number of seconds, `datetime.timedelta`, or `None`. The
            training time budget. Defaults to `None`.

    Example:

    ```python
    stop = keras_fastrain.callbacks.EarlyStopping(
        monitor="val_accuracy", target=0.88, patience=3, max_duration=600
    )
    model.fit(x, y, validation_split=0.1, epochs=50, callbacks=[stop])
    print(stop.stopped_reason, stop.time_to_target)
    ```
    """

    SUPPORTED_MODES = ("auto", "min", "max")

    @property
    def async_safe(self):
        """Whether Keras may dispatch steps asynchronously: the batch hook
        only reads a clock and never `logs`, but with a time budget on
        several workers it runs a collective, which must not run on Keras's
        callback thread out of step with the training."""
        return self.max_duration is None or distribute.current().size == 1

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
        target=None,
        divergence_threshold=None,
        check_finite=True,
        max_duration=None,
    ):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(
                "Invalid value for argument `monitor`. "
                f"Received: monitor={monitor!r}. Expected a metric name."
            )
        super().__init__(
            monitor=monitor,
            min_delta=check_float("min_delta", min_delta),
            patience=check_int("patience", patience, minimum=0),
            verbose=check_int("verbose", verbose, minimum=0),
            mode=check_choice("mode", mode, self.SUPPORTED_MODES),
            baseline=check_optional_finite("baseline", baseline),
            restore_best_weights=check_flag("restore_best_weights", restore_best_weights),
            start_from_epoch=check_int("start_from_epoch", start_from_epoch, minimum=0),
        )
        self.target = check_optional_finite("target", target)
        self.divergence_threshold = check_optional_finite(
            "divergence_threshold", divergence_threshold
        )
        self.check_finite = check_bool("check_finite", check_finite)
        self.max_duration = (
            None if max_duration is None else check_duration("max_duration", max_duration)
        )
        direction = mode if mode != "auto" else infer_mode(monitor)
        if direction is not None:
            self._set_direction(direction)
        self._reset()

    @property
    def direction(self):
        """`"min"`, `"max"`, or `None` until the first epoch tells (see `mode`)."""
        if self.monitor_op is None:
            return None
        return "min" if self.monitor_op is keras.ops.less else "max"

    def _set_direction(self, direction):
        """Sets `monitor_op` and the sign of `min_delta` as Keras does."""
        self.monitor_op = keras.ops.less if direction == "min" else keras.ops.greater
        self.min_delta = -abs(self.min_delta) if direction == "min" else abs(self.min_delta)

    # --- State ---------------------------------------------------------------

    def _reset(self):
        self.wait = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None
        self.stopped_epoch = 0
        self.stopped_reason = None
        self.time_to_target = None
        self._elapsed_before = 0.0
        self._start = None
        self._restored = False

    def elapsed(self):
        """Training seconds since `fit` began, including those before a resume."""
        if self._start is None:
            return self._elapsed_before
        return self._elapsed_before + time.perf_counter() - self._start

    def get_state(self):
        """Returns what a resumed run needs, as a JSON-serializable dict."""
        return {
            "wait": self.wait,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "elapsed": self.elapsed(),
            "time_to_target": self.time_to_target,
        }

    def set_state(self, state):
        """Restores `get_state()`'s dict; the next `fit` continues from it."""
        self.wait = int(state["wait"])
        self.best = state["best"]
        self.best_epoch = int(state["best_epoch"])
        self._elapsed_before = float(state["elapsed"])
        self.time_to_target = state["time_to_target"]
        if self._start is None:  # Before `fit`: its `on_train_begin` keeps this.
            self._restored = True
        else:  # During `fit`: the clock goes on from the restored time.
            self._start = time.perf_counter()

    # --- Decisions (pure: tests call them with fake values) ------------------

    def _better(self, value, reference, delta=0.0):
        if self.direction == "min":
            return value - delta < reference
        return value + delta > reference

    def _is_improvement(self, monitor_value, reference_value):
        """Keras's test, on Python floats: better than the reference by
        more than `min_delta` (any value beats `None`)."""
        if reference_value is None:
            return True
        return self._better(monitor_value, reference_value, -abs(self.min_delta))

    def _decide(self, current, loss, epoch):
        """Returns `(stop, reason)` for the end of `epoch`; updates best and wait."""
        values = [v for v in (current, loss) if v is not None]
        if self.check_finite and not all(math.isfinite(v) for v in values):
            return True, StopReason.NOT_FINITE
        if current is None:
            return False, None
        if self.divergence_threshold is not None and self._better(
            self.divergence_threshold, current
        ):
            return True, StopReason.DIVERGED
        improved = self._track_best(current, epoch)
        if self.target is not None and not self._better(self.target, current):
            return True, StopReason.TARGET_REACHED
        if epoch < self.start_from_epoch or improved:
            return False, None
        if self.wait >= self.patience and epoch > 0:
            return True, StopReason.NO_IMPROVEMENT
        return False, None

    def _track_best(self, current, epoch):
        """Keras's rule for best and wait; returns whether `current` improved.

        An improvement that does not beat `baseline` counts as improved (no
        patience check this epoch) without resetting the wait, as in Keras.
        """
        if epoch < self.start_from_epoch:
            return False
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if not self._is_improvement(current, self.best):
            return False
        self.best = current
        self.best_epoch = epoch
        if self.restore_best_weights:
            self.best_weights = self.model.get_weights()
        if self.baseline is None or self._is_improvement(current, self.baseline):
            self.wait = 0
        return True

    def _decide_time(self):
        return self.max_duration is not None and self.elapsed() >= self.max_duration

    # --- Keras hooks ---------------------------------------------------------

    def on_train_begin(self, logs=None):
        if not self._restored:
            self._reset()
        # A run's outcome never carries over, restored state or not.
        self._restored = False
        self.best_weights = None
        self.stopped_reason = None
        self.stopped_epoch = 0
        now = time.perf_counter()
        # The clock starts with the set-up before the first step (a search).
        self._start = now - setup_time.spent_before(self.model, now)

    def on_train_batch_end(self, batch, logs=None):
        if self.max_duration is not None and any_worker(self._decide_time()):
            self._stop(StopReason.TIME_BUDGET)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        current = self._monitored(logs, epoch)
        if current is not None and self.monitor_op is None:
            self._set_direction_from_model()
        loss = logs.get("loss")
        stop, reason = self._decide(current, None if loss is None else _scalar("loss", loss), epoch)
        if reason is StopReason.TARGET_REACHED and self.time_to_target is None:
            self.time_to_target = self.elapsed()
        if not stop and self._decide_time():
            stop, reason = True, StopReason.TIME_BUDGET
        if any_worker(stop):
            self._stop(reason or StopReason.NO_IMPROVEMENT)
        if self.stopped_reason is not None:  # Also after a stop within the epoch.
            self.stopped_epoch = epoch

    def _monitored(self, logs, epoch):
        """The monitored value as a float, or `None` when this epoch has none.

        A key missing because validation did not run this epoch warns, as
        Keras does; a key in none of the logs is an error that names the
        closest one.
        """
        if self.monitor in logs:
            return _scalar(self.monitor, logs[self.monitor])
        available = ", ".join(sorted(logs)) or "none"
        trained = self.monitor.removeprefix("val_")
        if (
            trained != self.monitor
            and trained in logs
            and not any(key.startswith("val_") for key in logs)
        ):
            warnings.warn(
                f"EarlyStopping monitors `{self.monitor}`, which is not in the logs of "
                f"epoch {epoch + 1} (no validation ran). Available: {available}.",
                stacklevel=3,
            )
            return None
        closest = difflib.get_close_matches(self.monitor, sorted(logs), n=1)
        hint = f" Did you mean `{closest[0]}`?" if closest else ""
        raise ValueError(
            f"EarlyStopping monitors `{self.monitor}`, which is in none of the logs of "
            f"epoch {epoch + 1}.{hint} Available: {available}. (A key that another "
            "callback adds needs that callback before EarlyStopping in `callbacks`.)"
        )

    def _set_direction_from_model(self):
        """Keras's `mode="auto"` for a name this module does not know: the
        direction of the compiled metric of that name."""
        try:
            _keras_internals.monitor_direction_from_model(self)
        except ValueError:
            raise ValueError(
                f"Cannot tell whether `monitor={self.monitor!r}` should go up or down: "
                "neither its name nor a compiled metric of that name says. Pass "
                "mode='min' or mode='max'."
            ) from None

    def _stop(self, reason):
        self.model.stop_training = True
        if self.stopped_reason is None:
            self.stopped_reason = reason

    def on_train_end(self, logs=None):
        self._elapsed_before = self.elapsed()
        self._start = None
        if self.stopped_reason is not None and self.verbose:
            print(f"EarlyStopping: {self.describe_stop()}")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"EarlyStopping: restoring the weights of epoch {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def describe_stop(self):
        """Returns one sentence on why training stopped, or `None` if it did not."""
        reason = self.stopped_reason
        at = f"epoch {self.stopped_epoch + 1}"
        if reason is StopReason.TARGET_REACHED:
            return (
                f"{self.monitor} reached the target {self.target:g} at {at}, "
                f"after {self.time_to_target:.1f} s of training."
            )
        if reason is StopReason.NO_IMPROVEMENT:
            return f"{self.monitor} did not improve for {self.wait} epochs; stopped at {at}."
        if reason is StopReason.DIVERGED:
            return (
                f"{self.monitor} passed the divergence threshold "
                f"{self.divergence_threshold:g} at {at}."
            )
        if reason is StopReason.NOT_FINITE:
            return f"{self.monitor} or the loss was not finite at {at}."
        if reason is StopReason.TIME_BUDGET:
            return (
                f"the time budget of {self.max_duration:g} s was spent at {at} "
                f"({self.elapsed():.1f} s)."
            )
        return None
