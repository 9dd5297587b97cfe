"""The batch-size search: which batch gives the most samples per second.

Pure logic over a `measure(batch_size)` function, so that it can be tested
against any step-time curve. The search has three phases, all within
`max_trials` measurements:

1. Doubling from `min_batch_size` until a batch does not fit, the limit is
   reached, or two doublings in a row gain less than `margin` throughput.
2. Bisection between the largest batch that fitted and the smallest that
   did not, when the fastest batch so far is the largest that fitted (a
   bigger one might be faster still).
3. Bisection towards the smallest batch whose throughput is within
   `margin` of the best: a smaller batch takes more optimizer steps per
   epoch, so of two batches equally fast the smaller one is kept.
"""

import dataclasses
import json

__all__ = ["BatchSizeSearch", "BatchSizeTrial", "DoesNotFitError", "search_batch_size"]

OK = "ok"
OUT_OF_MEMORY = "out of memory"
OVER_BUDGET = "over memory budget"


class DoesNotFitError(Exception):
    """Raised by a `measure` function when a batch cannot run.

    `search_batch_size` records the batch as a `BatchSizeTrial` with this status
    and detail, and goes on.

    Args:
        status: `OUT_OF_MEMORY` (`"out of memory"`: the device refused it)
            or `OVER_BUDGET` (`"over memory budget"`: the memory estimate
            exceeds the budget, so it was not run).
        detail: String. What was seen. Defaults to `""`.

    Example:

    ```python
    from keras_fastrain.batching.search import OUT_OF_MEMORY


    def measure(batch_size):
        try:
            return time_one_step(batch_size)  # seconds per step
        except MemoryError as error:
            raise keras_fastrain.batching.DoesNotFitError(OUT_OF_MEMORY, str(error))
    ```
    """

    def __init__(self, status, detail=""):
        super().__init__(detail or status)
        self.status = status
        self.detail = detail


@dataclasses.dataclass
class BatchSizeTrial:
    """One measured batch size.

    Its `samples_per_second` property is `batch_size / seconds_per_step`,
    or `None` when the batch did not fit.

    Args:
        batch_size: Integer. The (global) batch size measured.
        status: String: `"ok"`, `"out of memory"` or `"over memory budget"`
            (`OK`, `OUT_OF_MEMORY`, `OVER_BUDGET`).
        seconds_per_step: Float, or `None` when the batch did not fit.
            Defaults to `None`.
        detail: String. Why it did not fit. Defaults to `""`.

    Example:

    ```python
    search = keras_fastrain.batching.BatchSizeFinder().find(model, x_train, y_train)
    for trial in search.trials:
        print(trial.batch_size, trial.status, trial.samples_per_second)
    ```
    """

    batch_size: int
    status: str
    seconds_per_step: float | None = None
    detail: str = ""

    @property
    def samples_per_second(self):
        if self.status != OK:
            return None
        return self.batch_size / self.seconds_per_step if self.seconds_per_step else float("inf")


@dataclasses.dataclass
class BatchSizeSearch:
    """What a batch-size search found.

    Made by `find_batch_size`, `BatchSizeFinder.find` and
    `search_batch_size`; its fields are also its attributes. `fastest` is
    the measured batch with the highest throughput, `table()` the trials as
    text, `to_json()` the whole result.

    Args:
        batch_size: Integer. The smallest measured batch within `margin` of
            the highest throughput: the one to train with.
        max_batch_size: Integer. The largest measured batch that fitted:
            where growth during training stops.
        trials: List of every `BatchSizeTrial`, in the order measured.
        margin: Float. The relative throughput margin used.

    Example:

    ```python
    search = keras_fastrain.batching.BatchSizeFinder().find(model, x_train, y_train)
    print(search.table())
    print(search.batch_size, search.fastest, search.max_batch_size)
    model.fit(x_train, y_train, batch_size=search.batch_size)
    ```
    """

    batch_size: int
    max_batch_size: int
    trials: list
    margin: float

    @property
    def fastest(self):
        """The measured batch with the highest throughput."""
        return max(self._fitting(), key=lambda t: t.samples_per_second).batch_size

    def _fitting(self):
        return [t for t in self.trials if t.status == OK]

    def to_dict(self):
        return {
            "batch_size": self.batch_size,
            "max_batch_size": self.max_batch_size,
            "margin": self.margin,
            "trials": [
                {**dataclasses.asdict(t), "samples_per_second": t.samples_per_second}
                for t in self.trials
            ],
        }

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)

    def table(self):
        """The trials as a text table, sorted by batch size, the pick marked."""
        lines = [f"{'batch':>7}  {'samples/s':>11}  {'ms/step':>8}  status"]
        for trial in sorted(self.trials, key=lambda t: t.batch_size):
            rate = trial.samples_per_second
            step = trial.seconds_per_step
            mark = "  <- chosen" if trial.batch_size == self.batch_size else ""
            lines.append(
                f"{trial.batch_size:>7}  {'-' if rate is None else f'{rate:,.0f}':>11}  "
                f"{'-' if step is None else f'{step * 1e3:.2f}':>8}  {trial.status}{mark}"
            )
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def search_batch_size(
    measure,
    min_batch_size=32,
    max_batch_size=None,
    max_trials=10,
    margin=0.05,
    multiple_of=8,
):
    """Searches the batch size with the highest throughput.

    Args:
        measure: Callable `measure(batch_size) -> seconds_per_step`; raises
            `DoesNotFitError` when the batch cannot run.
        min_batch_size: Integer. The first candidate.
        max_batch_size: Integer or `None`. No candidate above it.
        max_trials: Integer >= 1. At most this many measurements.
        margin: Float in [0, 1). Relative throughput within which two
            batches count as equally fast.
        multiple_of: Integer. Bisection candidates are multiples of it.

    Returns:
        A `BatchSizeSearch`.

    Raises:
        ValueError: if not even `min_batch_size` fits.

    Example:

    ```python
    from keras_fastrain.batching.search import DoesNotFitError, search_batch_size
    from keras_fastrain.batching.search import OUT_OF_MEMORY


    def measure(batch_size):  # a made-up device: 2 ms per step plus 10 us a sample
        if batch_size > 1000:
            raise DoesNotFitError(OUT_OF_MEMORY)
        return 0.002 + 1e-5 * batch_size


    search = search_batch_size(measure, min_batch_size=32, max_trials=8)
    search.batch_size, search.fastest  # (768, 896): 768 is within 5% of 896's throughput
    ```
    """
    trials = {}

    def run(batch_size):
        try:
            trial = BatchSizeTrial(batch_size, OK, float(measure(batch_size)))
        except DoesNotFitError as error:
            trial = BatchSizeTrial(batch_size, error.status, detail=error.detail)
        trials[batch_size] = trial
        return trial

    def best_rate():
        return max((t.samples_per_second for t in trials.values() if t.status == OK), default=0)

    # 1. Doubling.
    batch_size, stalls, smallest_failed = min_batch_size, 0, None
    while len(trials) < max_trials:
        previous_best = best_rate()
        trial = run(batch_size)
        if trial.status != OK:
            smallest_failed = batch_size
            break
        stalls = 0 if trial.samples_per_second > previous_best * (1 + margin) else stalls + 1
        if stalls >= 2 or (max_batch_size is not None and batch_size >= max_batch_size):
            break
        batch_size *= 2
        if max_batch_size is not None:
            batch_size = min(batch_size, max_batch_size)

    fitting = sorted(b for b, t in trials.items() if t.status == OK)
    if not fitting:
        detail = trials[min_batch_size].detail
        raise ValueError(
            f"Not even the smallest batch size, {min_batch_size}, fits: "
            f"{trials[min_batch_size].status}{f' ({detail})' if detail else ''}. "
            "Lower `min_batch_size`, or raise `memory_budget`."
        )

    def rate(b):
        return trials[b].samples_per_second

    # 2. Bisect the memory limit when the largest batch that fitted is the fastest.
    largest = fitting[-1]
    if smallest_failed is not None and rate(largest) >= best_rate():
        low, high = largest, smallest_failed
        while len(trials) < max_trials and high - low > multiple_of:
            middle = _rounded_middle(low, high, multiple_of)
            if middle is None:
                break
            if run(middle).status == OK:
                low = middle
            else:
                high = middle

    # 3. Bisect towards the smallest batch within the margin of the best.
    def pick():
        threshold = best_rate() * (1 - margin)
        return min(b for b, t in trials.items() if t.status == OK and rate(b) >= threshold)

    while len(trials) < max_trials:
        chosen = pick()
        below = [b for b, t in trials.items() if t.status == OK and b < chosen]
        if not below:
            break
        middle = _rounded_middle(max(below), chosen, multiple_of)
        if middle is None or middle in trials:
            break
        run(middle)

    return BatchSizeSearch(
        batch_size=pick(),
        max_batch_size=max(b for b, t in trials.items() if t.status == OK),
        trials=list(trials.values()),
        margin=margin,
    )


def _rounded_middle(low, high, multiple_of):
    """A multiple of `multiple_of` strictly between `low` and `high`, or `None`."""
    middle = (low + high) // 2 // multiple_of * multiple_of
    if middle <= low:
        middle += multiple_of
    return middle if low < middle < high else None
