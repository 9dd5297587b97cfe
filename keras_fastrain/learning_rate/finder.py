"""`LearningRateFinder`: the learning-rate range test, on the user's model.

A learning rate too small wastes epochs; one too large diverges. The range
test (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017;
fast.ai's `lr_find`, Lightning's `LearningRateFinder`) trains a few steps
while the rate grows exponentially from tiny to huge, records the smoothed
training loss at each, and stops once the loss blows up. The suggestion is
where the loss falls fastest against the logarithm of the rate, and at most
a tenth of the rate where it is lowest (see `suggest`).

Here the test is bounded (`num_steps`, and `max_seconds` of wall time), the
model and its optimizer come out exactly as they went in (a
`keras_fastrain.snapshot.ModelSnapshot`), and with several workers every
worker sees the same averaged losses, so all stop and suggest alike. When
the curve shows no clear descent, there is no suggestion (`None`), and the
reason says why: keep your own rate then.
"""

import dataclasses
import math
import time

import numpy as np

from keras_fastrain.distribute import current
from keras_fastrain.distribute.sharding import shard
from keras_fastrain.scaling import rate_comes_from_schedule
from keras_fastrain.snapshot import ModelSnapshot
from keras_fastrain.validation import check_arrays, check_float, check_int

__all__ = ["LearningRateFinder", "LearningRateSearch"]

# Why a search ended.
COMPLETED = "completed"
DIVERGED = "diverged"
TIME_BUDGET = "time budget"
# Points at the start of the curve the suggestion ignores: the smoothed loss
# there still mostly reflects the first batches, not the rate.
SKIP_START = 0.1


@dataclasses.dataclass
class LearningRateSearch:
    """What a `LearningRateFinder` measured, and the rate it suggests.

    Attributes:
        rates: List of the learning rates tried, one per step, increasing.
        losses: List of the smoothed training losses at those rates.
        raw_losses: List of each step's training loss (averaged over the
            workers).
        suggestion: Float or `None`. The suggested rate (see `suggest`);
            `None` when the curve had no clear descent.
        min_loss_rate: Float or `None`. The rate with the lowest smoothed loss.
        stopped: String. `"completed"`, `"diverged"` or `"time budget"`.
        seconds: Float. The wall time of the test, restoring included.
        reason: String. Why this suggestion (or none), in one sentence.

    Example:

    ```python
    search = keras_fastrain.learning_rate.LearningRateFinder().find(model, x, y)
    print(search.table())
    if search.suggestion is not None:
        model.optimizer.learning_rate = search.suggestion
    ```
    """

    rates: list
    losses: list
    raw_losses: list
    suggestion: float | None
    min_loss_rate: float | None
    stopped: str
    seconds: float
    reason: str

    def table(self):
        """A short text summary: the suggestion, why, and about ten points."""
        lines = [
            f"learning-rate range test: {len(self.rates)} steps, {self.stopped}, "
            f"{self.seconds:.1f} s",
            f"suggestion: {'none' if self.suggestion is None else f'{self.suggestion:.3g}'}"
            f" ({self.reason})",
            f"{'rate':>10} {'smoothed loss':>14}",
        ]
        step = max(1, len(self.rates) // 10)
        for rate, loss in list(zip(self.rates, self.losses, strict=True))[::step]:
            lines.append(f"{rate:>10.3g} {loss:>14.4f}")
        return "\n".join(lines)


class LearningRateFinder:
    """Runs the learning-rate range test on a compiled model.

    Args:
        min_learning_rate: Float > 0. The first rate tried. Defaults to `1e-7`.
        max_learning_rate: Float > `min_learning_rate`. The last rate tried.
            Defaults to `10.0`.
        num_steps: Integer >= 5. Training steps, one rate each, spaced
            evenly in log(rate). Defaults to `100`.
        max_seconds: Float > 0. The test stops after this much wall time,
            with what it has measured. Defaults to `60.0`.
        batch_size: Integer >= 1. The batch each step trains on (use the
            batch you will train with: the best rate depends on it).
            Defaults to `32`.
        smoothing: Float in [0, 1). The weight of the past in the loss's
            exponential moving average (fast.ai's 0.98). Defaults to `0.98`.
        divergence: Float > 1. The test stops once the smoothed loss is this
            many times its lowest. Defaults to `4.0`.
        seed: Integer >= 0. Which samples the steps train on. Defaults to `0`.

    Raises:
        ValueError: for a value out of range, named with what is allowed.

    Example:

    ```python
    finder = keras_fastrain.learning_rate.LearningRateFinder(batch_size=64, max_seconds=20)
    search = finder.find(model, x_train, y_train)
    print(search.suggestion, search.reason)
    ```
    """

    def __init__(
        self,
        min_learning_rate=1e-7,
        max_learning_rate=10.0,
        num_steps=100,
        max_seconds=60.0,
        batch_size=32,
        smoothing=0.98,
        divergence=4.0,
        seed=0,
    ):
        self.min_learning_rate = check_float(
            "min_learning_rate", min_learning_rate, low=0, closed=(False, True)
        )
        self.max_learning_rate = check_float(
            "max_learning_rate", max_learning_rate, low=self.min_learning_rate, closed=(False, True)
        )
        if math.isinf(self.max_learning_rate):
            raise ValueError(
                "Invalid value for argument `max_learning_rate`. Received: "
                "max_learning_rate=inf. Expected a finite rate."
            )
        self.num_steps = check_int("num_steps", num_steps, minimum=5)
        self.max_seconds = check_float("max_seconds", max_seconds, low=0, closed=(False, True))
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.smoothing = check_float("smoothing", smoothing, low=0, high=1, closed=(True, False))
        self.divergence = check_float("divergence", divergence, low=1, closed=(False, True))
        self.seed = check_int("seed", seed, minimum=0)

    def rates(self):
        """The `num_steps` rates the test tries, in order."""
        return list(
            np.geomspace(self.min_learning_rate, self.max_learning_rate, self.num_steps).tolist()
        )

    def find(self, model, x, y=None, sample_weight=None):
        """Runs the test on `model` with `x`, `y`; returns a `LearningRateSearch`.

        The model's and its optimizer's variables (weights, slots,
        iterations, learning rate) are put back afterwards.

        Args:
            model: A compiled `keras.Model` whose optimizer has a fixed
                learning rate (not a `LearningRateSchedule`).
            x: Array, or a list/dict of arrays: the training inputs (this
                worker's share when workers feed their own data).
            y: Array, structure of arrays, or `None`. The targets.
            sample_weight: Array or `None`.

        Raises:
            ValueError: for an uncompiled model, or an optimizer whose rate
                comes from a schedule.
            TypeError: for inputs that are not arrays.
        """
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError("Compile the model before its learning-rate range test.")
        if rate_comes_from_schedule(optimizer):
            raise ValueError(
                "The learning-rate range test sets the rate step by step, and this "
                "optimizer takes it from a LearningRateSchedule: compile with a fixed "
                "rate for the test."
            )
        count = check_arrays("x", x)
        start = time.perf_counter()
        engine = current()
        snapshot = ModelSnapshot(model, x)
        rng = np.random.default_rng(self.seed + engine.rank)
        order = rng.permutation(count)
        rates, raw, smoothed = [], [], []
        average, best, stopped = 0.0, math.inf, COMPLETED
        try:
            for step, rate in enumerate(self.rates()):
                rows = np.take(
                    order,
                    np.arange(step * self.batch_size, (step + 1) * self.batch_size),
                    mode="wrap",
                )
                optimizer.learning_rate = rate
                logs = model.train_on_batch(
                    shard(x, rows),
                    shard(y, rows),
                    sample_weight=shard(sample_weight, rows),
                    return_dict=True,
                )
                loss = float(logs["loss"])
                if engine.size > 1:  # every worker sees, and decides on, the same curve
                    loss = float(engine.allreduce(np.asarray(loss, "float64"), "mean"))
                rates.append(rate)
                raw.append(loss)
                if not math.isfinite(loss):
                    stopped = DIVERGED
                    break
                average = self.smoothing * average + (1 - self.smoothing) * loss
                value = average / (1 - self.smoothing ** (step + 1))
                smoothed.append(value)
                best = min(best, value)
                if step > 0 and value > self.divergence * best:
                    stopped = DIVERGED
                    break
                out_of_time = time.perf_counter() - start > self.max_seconds
                if engine.size > 1:
                    out_of_time = bool(engine.allreduce(np.asarray(int(out_of_time)), "max"))
                if out_of_time and step + 1 < self.num_steps:
                    stopped = TIME_BUDGET
                    break
        finally:
            snapshot.restore()
        rates = rates[: len(smoothed)]  # a non-finite last loss has no smoothed value
        suggestion, reason = suggest(rates, raw[: len(smoothed)])
        return LearningRateSearch(
            rates=rates,
            losses=smoothed,
            raw_losses=raw,
            suggestion=suggestion,
            min_loss_rate=rates[int(np.argmin(smoothed))] if smoothed else None,
            stopped=stopped,
            seconds=time.perf_counter() - start,
            reason=reason,
        )


def suggest(rates, losses):
    """Returns `(rate or None, reason)` from a range test's curve.

    The curve is smoothed again without lag (a centered moving average over
    a tenth of the points: the running average that stops the test trails
    the rate by many steps), its lowest point found, and the suggestion is
    the rate where it falls fastest against log(rate) between the last
    point at the curve's starting level (before it, the curve only wanders)
    and the lowest point, but at most a tenth of the lowest point's rate:
    training at the rate of the lowest test loss is too close to
    divergence.

    Args:
        rates: Sequence of increasing learning rates.
        losses: Sequence of the losses at them (raw or smoothed).
    """
    if len(losses) < 5:
        return None, f"only {len(losses)} steps measured, too few for a curve"
    curve = _centered_average(np.asarray(losses, "float64"), max(3, len(losses) // 10))
    log_rates = np.log10(np.asarray(rates, "float64"))
    lowest = int(np.argmin(curve))
    begin = int(len(curve) * SKIP_START)
    if lowest - begin < 3:
        return None, "the loss rose from the start: no rate in the range lowered it"
    drop = curve[begin] - curve[lowest]
    if drop <= 0.01 * abs(curve[begin]):
        return None, "the loss fell less than 1% over the whole range"
    # The fall starts where the curve last stood at its starting level:
    # before that it only wanders (noise, on a short test).
    level = np.nonzero(curve[begin:lowest] >= curve[begin])[0]
    start = begin + int(level[-1]) if len(level) else begin
    slopes = np.gradient(curve, log_rates)
    steepest = start + int(np.argmin(slopes[start:lowest]))
    if slopes[steepest] >= 0:
        return None, "the loss did not fall as the rate grew"
    rate = min(float(rates[steepest]), float(rates[lowest]) / 10)
    return rate, (
        f"the loss fell fastest at {rates[steepest]:.3g} and was lowest at "
        f"{rates[lowest]:.3g}; {rate:.3g} is the lower of the first and a tenth of the second"
    )


def _centered_average(values, window):
    """A moving average centered on each point (shorter at the ends)."""
    half = window // 2
    sums = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(len(values))
    low = np.maximum(index - half, 0)
    high = np.minimum(index + half + 1, len(values))
    return (sums[high] - sums[low]) / (high - low)
