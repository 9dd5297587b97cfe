"""What a batch-size search measured: each `BatchSizeTrial`, the whole
`BatchSizeSearch` (the batch chosen, why the search ended, its table), and
`DoesNotFitError`, which a `measure` function raises for a batch that cannot
run. The search itself is `keras_fastrain.batching.search`.
"""

import dataclasses
import json

__all__ = ["BatchSizeSearch", "BatchSizeTrial", "DoesNotFitError"]

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
    from keras_fastrain.batching.trials import OUT_OF_MEMORY


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
        seconds: Float or `None`. The wall time measuring it took
            (compilation, set-up and any noise-scale measurement included),
            when the finder recorded it. Defaults to `None`.

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
    seconds: float | None = None

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
        noise_scale_seconds: Float or `None`. The wall time of the noise
            scale's measurement (part of `seconds`), or `None` when it was
            not measured. Defaults to `None`.

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
    noise_scale_seconds: float | None = None

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
            "noise_scale_seconds": self.noise_scale_seconds,
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
            if self.noise_scale_seconds is not None:
                noise += f" (measured in {self.noise_scale_seconds:.1f} s)"
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
            + f"{'ms/step':>8}  {'took s':>6}  status"
        ]
        for trial in sorted(self.trials, key=lambda t: t.batch_size):
            rate = trial.samples_per_second
            step = trial.seconds_per_step
            mark = "  <- chosen" if trial.batch_size == self.batch_size else ""
            columns = f"{trial.batch_size:>7}  {_number(rate):>11}  "
            if goodput:
                columns += f"{trial.efficiency:>10.2f}  {_number(trial.goodput):>9}  "
            took = "-" if trial.seconds is None else f"{trial.seconds:.1f}"
            lines.append(
                f"{columns}{'-' if step is None else f'{step * 1e3:.2f}':>8}  {took:>6}  "
                f"{trial.status}{mark}"
            )
        lines.append(self.summary())
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def _number(value):
    return "-" if value is None else f"{value:,.0f}"
