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

import dataclasses
import json

__all__ = [
    "BatchSizeSearch",
    "BatchSizeTrial",
    "DoesNotFitError",
    "goodput_efficiency",
    "search_batch_size",
]

OK = "ok"
OUT_OF_MEMORY = "out of memory"
OVER_BUDGET = "over memory budget"
# Why a search ended.
COMPLETED = "completed"
TIME_BUDGET = "time budget"


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
        efficiency: Float in (0, 1]. The statistical efficiency of this
            batch against the search's base batch (1 when the search scores
            throughput alone). Defaults to 1.0.

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
    efficiency: float = 1.0

    @property
    def samples_per_second(self):
        if self.status != OK:
            return None
        return self.batch_size / self.seconds_per_step if self.seconds_per_step else float("inf")

    @property
    def goodput(self):
        """Samples per second times efficiency, or `None` when it did not fit."""
        rate = self.samples_per_second
        return None if rate is None else rate * self.efficiency


@dataclasses.dataclass
class BatchSizeSearch:
    """What a batch-size search found.

    Made by `BatchSizeFinder.find` and `search_batch_size`; its fields are
    also its attributes. `fastest` is the measured batch with the highest
    throughput, `table()` the trials as text, `to_json()` the whole result.

    Args:
        batch_size: Integer. The smallest measured batch within `margin` of
            the best score (goodput, or throughput): the one to train with.
        max_batch_size: Integer. The largest measured batch that fitted:
            where growth during training stops.
        trials: List of every `BatchSizeTrial`, in the order measured.
        margin: Float. The relative margin used.
        objective: String. `"goodput"` (throughput times efficiency) or
            `"throughput"`. Defaults to `"throughput"`.
        noise_scale: Float or `None`. The gradient noise scale the
            efficiencies came from; `None` with `objective="goodput"` when
            no batch ran more than `margin` more samples per second than
            the base batch, so no efficiency could change the pick.
            Defaults to `None`.
        stopped: String. `"completed"`, or `"time budget"` when the search
            ran out of its time before it was done. Defaults to
            `"completed"`.
        seconds: Float or `None`. The search's wall time, measurements,
            noise scale and restoring the model included. Defaults to
            `None`.
        max_seconds: Float or `None`. The time budget it had. Defaults to
            `None`.
        trained_steps: Integer. The training steps of the measurements
            that the model kept (`find(keep_training=True)`, as
            `FastModel.fit` runs it); 0 when the model was put back.
            Defaults to 0.
        trained_samples: Integer. The samples those steps trained on.
            Defaults to 0.
        trained_seconds: Float. The time those samples would have taken
            at the base batch's pace: about the time the search spent
            training. Defaults to 0.0.

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
    objective: str = "throughput"
    noise_scale: float | None = None
    stopped: str = COMPLETED
    seconds: float | None = None
    max_seconds: float | None = None
    trained_steps: int = 0
    trained_samples: int = 0
    trained_seconds: float = 0.0

    @property
    def fastest(self):
        """The measured batch with the highest throughput."""
        return max(self._fitting(), key=lambda t: t.samples_per_second).batch_size

    @property
    def base_batch_size(self):
        """The first batch measured: the one a larger batch must beat."""
        return self.trials[0].batch_size

    def _fitting(self):
        return [t for t in self.trials if t.status == OK]

    def to_dict(self):
        return {
            "batch_size": self.batch_size,
            "max_batch_size": self.max_batch_size,
            "margin": self.margin,
            "objective": self.objective,
            "noise_scale": self.noise_scale,
            "stopped": self.stopped,
            "seconds": self.seconds,
            "max_seconds": self.max_seconds,
            "trained_steps": self.trained_steps,
            "trained_samples": self.trained_samples,
            "trained_seconds": self.trained_seconds,
            "trials": [
                {
                    **dataclasses.asdict(t),
                    "samples_per_second": t.samples_per_second,
                    "goodput": t.goodput,
                }
                for t in self.trials
            ],
        }

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)

    def summary(self):
        """One line: what was chosen, from how many measurements, in what time."""
        if self.noise_scale is not None:
            noise = f", noise scale {self.noise_scale:,.0f}"
        elif self.objective == "goodput":
            noise = f", noise scale not needed (no batch over {self.margin:.0%} faster)"
        else:
            noise = ""
        spent = "" if self.seconds is None else f" in {self.seconds:.1f} s"
        details = []
        if self.max_seconds is not None:
            details.append(f"budget {self.max_seconds:.1f} s")
        if self.seconds is not None and self.trained_steps:
            trained = min(self.seconds, self.trained_seconds)
            details.append(f"about {trained:.1f} s of it training the model")
        budget = f" ({'; '.join(details)})" if details else ""
        ending = "; stopped by its time budget" if self.stopped == TIME_BUDGET else ""
        if self.trained_steps:
            ending += (
                f"; its {self.trained_steps:,} steps ({self.trained_samples:,} samples) "
                "are kept as training"
            )
        return (
            f"batch {self.batch_size}: the smallest within {self.margin:.0%} of the best "
            f"{self.objective} of {len(self.trials)} sizes measured{spent}{budget}{noise}"
            f"{ending}"
        )

    def table(self):
        """The trials as a text table, sorted by batch size, the pick marked."""
        goodput = self.objective == "goodput"
        lines = [
            f"{'batch':>7}  {'samples/s':>11}  "
            + (f"{'efficiency':>10}  {'goodput':>9}  " if goodput else "")
            + f"{'ms/step':>8}  status"
        ]
        for trial in sorted(self.trials, key=lambda t: t.batch_size):
            rate = trial.samples_per_second
            step = trial.seconds_per_step
            mark = "  <- chosen" if trial.batch_size == self.batch_size else ""
            columns = f"{trial.batch_size:>7}  {_number(rate):>11}  "
            if goodput:
                columns += f"{trial.efficiency:>10.2f}  {_number(trial.goodput):>9}  "
            lines.append(
                f"{columns}{'-' if step is None else f'{step * 1e3:.2f}':>8}  {trial.status}{mark}"
            )
        lines.append(self.summary())
        return "\n".join(lines)

    def __str__(self):
        return self.table()


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


def _number(value):
    return "-" if value is None else f"{value:,.0f}"


def _rounded_middle(low, high, multiple_of):
    """A multiple of `multiple_of` strictly between `low` and `high`, or `None`."""
    middle = (low + high) // 2 // multiple_of * multiple_of
    if middle <= low:
        middle += multiple_of
    return middle if low < middle < high else None
