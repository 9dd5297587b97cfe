"""`TimeToAccuracy`: tune for the wall-clock time to reach a target metric.

KerasTuner ranks trials by a value in each epoch's logs. This objective's
value is the seconds from the start of the trial's `fit` to the end of the
first epoch (its validation included) whose monitored metric reached the
target; `TimeToTargetLogger` writes it into the logs every epoch. A trial
that has not reached the target scores `NOT_REACHED` seconds times one plus
its shortfall, so it ranks below every trial that did, and the closest of
those that did not ranks first among them. Epochs without the metric
(`validation_freq`) or with a non-finite value keep the score as it was.
"""

import math
import time

import keras
import keras_tuner

from keras_fastrain import setup_time
from keras_fastrain.callbacks.metric_direction import infer_mode
from keras_fastrain.validation import check_bool, check_float

__all__ = ["NOT_REACHED", "TimeToAccuracy", "TimeToTargetLogger"]

NOT_REACHED = 1e9  # seconds: more than any trial that reaches the target


def _check_monitor(monitor):
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(
            f"Invalid value for argument `monitor`. Received: monitor={monitor!r}. "
            "Expected a metric name, e.g. 'val_accuracy'."
        )
    return monitor


class TimeToAccuracy(keras_tuner.Objective):
    """Minimise the seconds a trial's `fit` takes to reach `target`.

    Give it to a `keras_fastrain.tuner` tuner as its `objective`; the tuner
    adds a `TimeToTargetLogger` to every trial (which stops the trial at the
    target: later epochs cannot improve its score).

    Args:
        monitor: String. The metric in the epoch logs, e.g.
            `"val_accuracy"`. Defaults to `"val_accuracy"`.
        target: Number. The value to reach (`>=` for a metric that goes up,
            `<=` for one that goes down, like a loss).
        direction: `"max"`, `"min"` or `None` (inferred from `monitor`'s
            name, as `keras_fastrain.callbacks.EarlyStopping` does): whether
            `monitor` goes up.

    Example:

    ```python
    objective = TimeToAccuracy("val_accuracy", target=0.9)
    print(objective.name)  # time_to_val_accuracy
    ```
    """

    def __init__(self, monitor="val_accuracy", target=None, direction=None):
        _check_monitor(monitor)
        if target is None:
            raise ValueError(
                "Invalid value for argument `target`. Received: target=None. Expected the "
                f"value of {monitor!r} to reach, e.g. 0.9."
            )
        metric_direction = direction or infer_mode(monitor)
        if metric_direction not in ("max", "min"):
            raise ValueError(
                f"Invalid value for argument `direction`. Received: direction={direction!r}. "
                f"Expected 'max' or 'min' (it cannot be told from monitor={monitor!r})."
            )
        super().__init__(f"time_to_{monitor}", direction="min")
        self.monitor = monitor
        self.target = check_float("target", target)
        self.metric_direction = metric_direction

    def logger(self):
        """A fresh `TimeToTargetLogger` for one trial."""
        return TimeToTargetLogger(self.monitor, self.target, self.metric_direction)


class TimeToTargetLogger(keras.callbacks.Callback):
    """Adds `time_to_<monitor>` to every epoch's logs (see the module).

    Args:
        monitor: String. The metric to watch.
        target: Number. The value to reach.
        direction: `"max"` or `"min"`.
        stop_at_target: Bool. Stop training once the target is reached.
            Defaults to `True`.

    Example:

    ```python
    logger = TimeToTargetLogger("val_accuracy", target=0.9)
    model.fit(x, y, validation_split=0.2, epochs=20, callbacks=[logger])
    print(logger.time_to_target)  # seconds, or None if never reached
    ```
    """

    def __init__(self, monitor, target, direction="max", stop_at_target=True):
        super().__init__()
        self.monitor = _check_monitor(monitor)
        self.target = check_float("target", target)
        if direction not in ("max", "min"):
            raise ValueError(
                f"Invalid value for argument `direction`. Received: direction={direction!r}. "
                "Expected 'max' or 'min'."
            )
        self.direction = direction
        self.stop_at_target = check_bool("stop_at_target", stop_at_target)
        self.key = f"time_to_{monitor}"
        self.time_to_target = None
        self._restored = None  # a state from set_state, for the run that begins
        self._start = None

    def on_train_begin(self, logs=None):
        now = time.perf_counter()
        # The clock starts with the set-up before the first step (a search).
        self._start = now - setup_time.spent_before(self.model, now)
        self.time_to_target = None
        self._best = None
        self._missing_from = None
        if self._restored is not None:
            self._apply_state(self._restored)
            self._restored = None

    def on_train_end(self, logs=None):
        self._start = None
        if self._best is None and self._missing_from is not None:
            raise KeyError(
                f"TimeToAccuracy monitors {self.monitor!r}, which was in no epoch's logs "
                f"({self._missing_from}). Pass validation data, or monitor a metric that "
                "fit logs."
            )

    def get_state(self):
        """The training time spent so far, the best value and the time to
        the target (JSON-serializable): a resumed run counts from where the
        interrupted one stopped."""
        elapsed = 0.0 if self._start is None else time.perf_counter() - self._start
        return {"elapsed": elapsed, "best": self._best, "time_to_target": self.time_to_target}

    def set_state(self, state):
        """Restores what `get_state` returned, for the run that begins (or is running)."""
        if self._start is None:
            self._restored = dict(state)
        else:
            self._apply_state(state)

    def _apply_state(self, state):
        self._start = time.perf_counter() - float(state["elapsed"])
        self._best = state["best"]
        self.time_to_target = state["time_to_target"]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        value = logs.get(self.monitor)
        if value is None:
            self._missing_from = sorted(logs)
        value = None if value is None else float(value)
        sign = 1.0 if self.direction == "max" else -1.0
        if value is None or not math.isfinite(value):  # not scored this epoch, or broken
            logs[self.key] = self.score()
            return
        if self._best is None or sign * value > sign * self._best:
            self._best = value
        if self.time_to_target is None and sign * (value - self.target) >= 0:
            self.time_to_target = time.perf_counter() - self._start
            if self.stop_at_target:
                self.model.stop_training = True
        logs[self.key] = self.score()

    def score(self):
        """The seconds to the target, or the penalty when not reached."""
        if self.time_to_target is not None:
            return self.time_to_target
        if self._best is None:  # nothing scored yet
            return 2 * NOT_REACHED
        sign = 1.0 if self.direction == "max" else -1.0
        return NOT_REACHED * (1.0 + max(0.0, sign * (self.target - self._best)))
