"""The time a fit spends before its first step on keras-fastrain's own
measurements (the batch-size search, the learning-rate range test), so that
every clock the user is shown counts it.

Whatever measures records its interval against the model; a clock that
starts in a callback's `on_train_begin` (`EarlyStopping`'s time to target,
`TimingProfiler`, the tuner's `TimeToTargetLogger`) adds the set-up that
began before it. A set-up that runs after that callback's `on_train_begin`
(an `AdaptiveBatchSize` listed after it) is inside its clock already.
`FastModel` clears the record when a fit begins; an `AdaptiveBatchSize` that
searched under a plain fit clears it when that fit ends.
"""

import contextlib
import dataclasses
import time
import weakref

__all__ = ["SetupInterval", "clear", "counted", "intervals", "spent_before"]

_RECORDS = weakref.WeakKeyDictionary()  # model -> [SetupInterval]


@dataclasses.dataclass(frozen=True)
class SetupInterval:
    """One measurement before training.

    Attributes:
        what: String, e.g. `"batch-size search"`.
        start, end: Floats. `time.perf_counter()` at its start and end.
    """

    what: str
    start: float
    end: float

    @property
    def seconds(self):
        return self.end - self.start


def clear(model):
    """Forgets the set-up recorded for `model` (a new fit begins)."""
    _RECORDS.pop(model, None)


@contextlib.contextmanager
def counted(model, what):
    """Records the time spent in the `with` block as set-up of `model`'s fit.

    Example:

    ```python
    with keras_fastrain.setup_time.counted(model, "batch-size search"):
        search = finder.find(model, x, y)
    ```
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        _RECORDS.setdefault(model, []).append(SetupInterval(what, start, time.perf_counter()))


def intervals(model):
    """The set-up recorded for `model`'s fit, in order."""
    return list(_RECORDS.get(model, ()))


def spent_before(model, moment):
    """Seconds of `model`'s recorded set-up that ran before `moment` (a
    `time.perf_counter()` value)."""
    return sum(max(0.0, min(i.end, moment) - i.start) for i in intervals(model))
