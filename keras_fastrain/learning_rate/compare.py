"""Which of a few learning rates trains the model faster, over a few steps.

A range test suggests a rate from a curve measured while the rate keeps
growing; before `FastModel(learning_rate="auto")` keeps a suggestion, it
trains the same steps, on the same batches, from the same weights, once at
the optimizer's own rate and once at the suggestion, and keeps the one
whose loss over the second half of those steps is lower. The model comes
out as it went in.
"""

import dataclasses
import time

import numpy as np

from keras_fastrain.distribute import current
from keras_fastrain.distribute.sharding import shard
from keras_fastrain.snapshot import ModelSnapshot
from keras_fastrain.validation import check_arrays, check_float, check_int

__all__ = ["RateComparison", "compare_rates"]


@dataclasses.dataclass
class RateComparison:
    """What `compare_rates` measured.

    Attributes:
        rates: List of the rates compared, in the order given.
        losses: List of each rate's mean training loss over the second half
            of the steps (averaged over the workers); `inf` where it broke.
        best: Float. The rate with the lowest loss (the first on a tie).
        steps: Integer. Steps trained at each rate.
        seconds: Float. Wall time, restoring included.
    """

    rates: list
    losses: list
    best: float
    steps: int
    seconds: float


def compare_rates(model, x, y, sample_weight=None, rates=(), steps=20, batch_size=32, seed=0):
    """Trains `steps` steps at each of `rates` from the model's current state.

    Args:
        model: A compiled `keras.Model` with a fixed learning rate.
        x, y, sample_weight: Training arrays (this worker's share).
        rates: Sequence of at least two rates > 0.
        steps: Integer >= 2. Steps at each rate.
        batch_size: Integer >= 1. Samples a step.
        seed: Integer. Which samples the steps train on (the same for
            every rate).

    Returns:
        A `RateComparison`.

    Example:

    ```python
    comparison = compare_rates(model, x, y, rates=[1e-3, 1e-2], steps=20)
    print(comparison.best, comparison.losses)
    ```
    """
    count = check_arrays("x", x)
    steps = check_int("steps", steps, minimum=2)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if len(rates) < 2:
        raise ValueError(f"Expected at least two rates to compare. Received: rates={rates!r}.")
    for rate in rates:
        check_float("rates", rate, low=0.0, closed=(False, False))
    start = time.perf_counter()
    engine = current()
    order = np.random.default_rng(seed + engine.rank).permutation(count)
    snapshot = ModelSnapshot(model, x)
    optimizer = model.optimizer
    losses = []
    try:
        for rate in rates:
            snapshot.restore()
            optimizer.learning_rate = float(rate)
            seen = []
            for step in range(steps):
                span = np.arange(step * batch_size, (step + 1) * batch_size)
                rows = np.take(order, span, mode="wrap")
                logs = model.train_on_batch(
                    shard(x, rows), shard(y, rows), shard(sample_weight, rows), return_dict=True
                )
                seen.append(float(logs["loss"]))
            loss = float(np.mean(seen[steps // 2 :]))
            if engine.size > 1:
                loss = float(engine.allreduce(np.asarray(loss, "float64"), "mean"))
            losses.append(loss if np.isfinite(loss) else float("inf"))
    finally:
        snapshot.restore()
    best = rates[int(np.argmin(losses))]
    return RateComparison(
        list(rates), losses, float(best), steps, seconds=time.perf_counter() - start
    )
