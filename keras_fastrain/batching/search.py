"""The batch-size search: which batch reaches the target soonest.

Pure logic over a `measure(batch_size)` function, so that it can be tested
against any step-time curve. Each batch is scored by its throughput
(samples per second) times, when an `efficiency` is given, its statistical
efficiency: the share of a sample's progress that survives at that batch.
With the gradient noise scale `B_noise` (McCandlish et al. 2018), a batch
`B` needs `(B_noise + B) / (B_noise + B0)` times the samples that the base
batch `B0` needs for the same progress, so its efficiency is
`(B_noise + B0) / (B_noise + B)` and throughput times efficiency is its
*goodput* (Pollux, Qiao et al., OSDI 2021). Without an efficiency the score
is the throughput alone.

The search has three phases, all within `max_trials` measurements and while
`out_of_time()` says there is time left:

1. Doubling from `min_batch_size` until a batch does not fit, the limit is
   reached, or two doublings in a row gain less than `margin` score.
2. Bisection between the largest batch that fitted and the smallest that
   did not, when the best batch so far is the largest that fitted (a
   bigger one might be better still).
3. Bisection towards the smallest batch whose score is within `margin` of
   the best: a smaller batch takes more optimizer steps per epoch, so of
   two batches equally good the smaller one is kept; a larger batch must
   beat the base batch by more than `margin` to be chosen.
"""

from keras_fastrain.batching.trials import (
    COMPLETED,
    OK,
    TIME_BUDGET,
    BatchSizeSearch,
    BatchSizeTrial,
    DoesNotFitError,
)

__all__ = ["goodput_efficiency", "search_batch_size"]


def goodput_efficiency(noise_scale, base_batch_size):
    """The statistical efficiency `E(B) = (B_noise + B0) / (B_noise + B)`.

    Args:
        noise_scale: Float >= 0 (infinite: every batch is fully efficient).
        base_batch_size: Integer. `B0`, the batch whose efficiency is 1.

    Returns:
        A function of the batch size.

    Example:

    ```python
    efficiency = goodput_efficiency(noise_scale=100.0, base_batch_size=32)
    efficiency(32), efficiency(256)  # (1.0, 0.37...)
    ```
    """
    if noise_scale == float("inf"):
        return lambda batch_size: 1.0
    return lambda batch_size: (noise_scale + base_batch_size) / (noise_scale + batch_size)


def search_batch_size(
    measure,
    min_batch_size=32,
    max_batch_size=None,
    max_trials=10,
    margin=0.05,
    multiple_of=8,
    efficiency=None,
    out_of_time=None,
):
    """Searches the batch size with the highest goodput (or throughput).

    Args:
        measure: Callable `measure(batch_size) -> seconds_per_step`; raises
            `DoesNotFitError` when the batch cannot run.
        min_batch_size: Integer. The first candidate, and the base batch.
        max_batch_size: Integer or `None`. No candidate above it.
        max_trials: Integer >= 1. At most this many measurements.
        margin: Float in [0, 1). Relative score within which two batches
            count as equally good.
        multiple_of: Integer. Bisection candidates are multiples of it.
        efficiency: Callable `efficiency(batch_size) -> float` or `None`
            (throughput alone). Called for every trial after each
            measurement, so it may depend on something `measure` measures
            when it first needs it (the noise scale, in `BatchSizeFinder`).
        out_of_time: Callable `() -> bool` or `None`: asked before every
            measurement after the first; `True` ends the search with what
            was measured (`stopped="time budget"`).

    Returns:
        A `BatchSizeSearch`.

    Raises:
        ValueError: if not even `min_batch_size` fits.

    Example:

    ```python
    from keras_fastrain.batching.search import search_batch_size
    from keras_fastrain.batching.trials import OUT_OF_MEMORY, DoesNotFitError


    def measure(batch_size):  # a made-up device: 2 ms per step plus 10 us a sample
        if batch_size > 1000:
            raise DoesNotFitError(OUT_OF_MEMORY)
        return 0.002 + 1e-5 * batch_size


    search = search_batch_size(measure, min_batch_size=32, max_trials=8)
    search.batch_size, search.fastest  # (768, 896): 768 is within 5% of 896's throughput
    ```
    """
    trials = {}
    state = {"stopped": COMPLETED}

    def run(batch_size):
        try:
            trial = BatchSizeTrial(batch_size, OK, float(measure(batch_size)))
        except DoesNotFitError as error:
            trial = BatchSizeTrial(batch_size, error.status, detail=error.detail)
        trials[batch_size] = trial
        if efficiency is not None:  # every trial's: it may have just been measured
            for each in trials.values():
                if each.status == OK:
                    each.efficiency = float(efficiency(each.batch_size))
        return trial

    def may_run():
        if len(trials) >= max_trials:
            return False
        if trials and out_of_time is not None and out_of_time():
            state["stopped"] = TIME_BUDGET
            return False
        return True

    def score(b):
        return trials[b].goodput

    def best_score():
        return max((t.goodput for t in trials.values() if t.status == OK), default=0)

    # 1. Doubling.
    batch_size, stalls, smallest_failed = min_batch_size, 0, None
    while may_run():
        trial = run(batch_size)
        if trial.status != OK:
            smallest_failed = batch_size
            break
        # The others' best as scored now: a measurement may have changed
        # every efficiency (the noise scale, measured once first needed).
        previous_best = max(
            (t.goodput for b, t in trials.items() if t.status == OK and b != batch_size),
            default=0,
        )
        stalls = 0 if trial.goodput > previous_best * (1 + margin) else stalls + 1
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

    # 2. Bisect the memory limit when the largest batch that fitted is the best.
    largest = fitting[-1]
    if smallest_failed is not None and score(largest) >= best_score():
        low, high = largest, smallest_failed
        while high - low > multiple_of and may_run():
            middle = _rounded_middle(low, high, multiple_of)
            if middle is None:
                break
            if run(middle).status == OK:
                low = middle
            else:
                high = middle

    # 3. Bisect towards the smallest batch within the margin of the best.
    def pick():
        threshold = best_score() * (1 - margin)
        return min(b for b, t in trials.items() if t.status == OK and score(b) >= threshold)

    while True:
        chosen = pick()
        below = [b for b, t in trials.items() if t.status == OK and b < chosen]
        if not below:
            break
        middle = _rounded_middle(max(below), chosen, multiple_of)
        if middle is None or middle in trials or not may_run():
            break
        run(middle)

    return BatchSizeSearch(
        batch_size=pick(),
        max_batch_size=max(b for b, t in trials.items() if t.status == OK),
        trials=list(trials.values()),
        margin=margin,
        objective="throughput" if efficiency is None else "goodput",
        stopped=state["stopped"],
    )


def _rounded_middle(low, high, multiple_of):
    """A multiple of `multiple_of` strictly between `low` and `high`, or `None`."""
    middle = (low + high) // 2 // multiple_of * multiple_of
    if middle <= low:
        middle += multiple_of
    return middle if low < middle < high else None
