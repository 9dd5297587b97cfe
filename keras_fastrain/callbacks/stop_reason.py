"""`StopReason`: why an `EarlyStopping` callback ended training."""

import enum

__all__ = ["StopReason"]


class StopReason(str, enum.Enum):
    """Why an `EarlyStopping` callback ended training.

    Its `stopped_reason` after `fit` (or `None` if it did not stop). The
    members are strings, so `StopReason.DIVERGED == "diverged"`.

    Attributes:
        TARGET_REACHED: The monitored value reached `target`.
        NO_IMPROVEMENT: No improvement for `patience` epochs.
        DIVERGED: The monitored value passed `divergence_threshold`.
        NOT_FINITE: The monitored value or the loss was NaN or infinite.
        TIME_BUDGET: `max_duration` was spent.

    Example:

    ```python
    stop = keras_fastrain.callbacks.EarlyStopping(monitor="val_accuracy", target=0.9)
    model.fit(x, y, validation_split=0.1, epochs=50, callbacks=[stop])
    if stop.stopped_reason is keras_fastrain.callbacks.StopReason.TARGET_REACHED:
        print(f"90% after {stop.time_to_target:.0f} s")
    ```
    """

    TARGET_REACHED = "target_reached"
    NO_IMPROVEMENT = "no_improvement"
    DIVERGED = "diverged"
    NOT_FINITE = "not_finite"
    TIME_BUDGET = "time_budget"
