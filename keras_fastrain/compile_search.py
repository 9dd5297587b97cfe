"""Measures `jit_compile` and `steps_per_execution` on the user's model.

Whether XLA pays depends on the model: on a CPU it makes a small dense
network several times faster and a conv net slower (TensorFlow's oneDNN
convolutions beat XLA's). So an `"auto"` choice is measured rather than
ruled: `search_compile_options` times a few steps of the model's own `fit`
under each candidate setting, from the same weights (put back after; or,
with `keep_training=True`, as `FastModel.fit` runs it, each on fresh rows
of the data with its steps kept as training), and keeps the fastest only
if it beats the first candidate, Keras's own setting, by more than
`margin`. The measurements stop when the next would
end past the budget (its cost guessed at twice the costliest so far): a
share of the run's expected time at the first candidate's pace.
"""

import dataclasses
import time

import numpy as np

from keras_fastrain.batching.step_timing import RowStream, sample_count, time_steps
from keras_fastrain.snapshot import ModelSnapshot
from keras_fastrain.validation import check_bool, check_float, check_int

__all__ = ["CompileOptionsSearch", "CompileOptionsTrial", "search_compile_options"]

# Steps timed per candidate epoch (rounded up to whole compiled calls).
TIMED_STEPS = 16


@dataclasses.dataclass(frozen=True)
class CompileOptionsTrial:
    """One measured setting.

    Attributes:
        jit_compile: Bool.
        steps_per_execution: Integer.
        samples_per_second: Float. Training throughput at the search's batch.
        seconds: Float. What measuring it cost, compilation included.
    """

    jit_compile: bool
    steps_per_execution: int
    samples_per_second: float
    seconds: float

    def label(self):
        xla = "XLA" if self.jit_compile else "no XLA"
        return f"{xla}, {self.steps_per_execution} step{'s' * (self.steps_per_execution > 1)}/call"


@dataclasses.dataclass(frozen=True)
class CompileOptionsSearch:
    """What `search_compile_options` measured and kept.

    Attributes:
        trials: List of `CompileOptionsTrial`, in the order measured; the
            first is the baseline (Keras's own setting).
        chosen: The `CompileOptionsTrial` kept.
        batch_size: Integer. The batch measured at.
        seconds: Float. The whole search's time.
        max_seconds: Float or `None`. Its budget.
        stopped: String. `"completed"`, or `"time budget"` when a candidate
            was left out because it would have ended past `max_seconds`.
        trained_steps: Integer. The measured steps the model kept as
            training (`keep_training=True`); 0 when it was put back.
        trained_seconds: Float. The time those steps would have taken at
            the baseline's pace: about the time the search spent training.
    """

    trials: list
    chosen: CompileOptionsTrial
    batch_size: int
    seconds: float
    max_seconds: float | None
    stopped: str
    trained_steps: int = 0
    trained_seconds: float = 0.0

    @property
    def baseline(self):
        return self.trials[0]

    def speedup(self):
        """The chosen setting's throughput over the baseline's."""
        return self.chosen.samples_per_second / self.baseline.samples_per_second

    def summary(self):
        """One sentence: what was measured and kept, with the numbers."""
        measured = ", ".join(
            f"{t.samples_per_second:,.0f} samples/s with {t.label()}" for t in self.trials
        )
        budget = "" if self.max_seconds is None else f" of a {self.max_seconds:.1f} s budget"
        if self.trained_steps:
            trained = min(self.seconds, self.trained_seconds)
            budget += f", about {trained:.1f} s of it training the model"
        left_out = "; the rest did not fit in the budget" if self.stopped != "completed" else ""
        if self.chosen is self.baseline:
            kept = f"kept {self.chosen.label()}, the first measured (Keras's setting)"
        else:
            kept = f"kept {self.chosen.label()}, {self.speedup():.2f}x the first measured"
        trained = (
            f"; its {self.trained_steps:,} steps are kept as training" if self.trained_steps else ""
        )
        return (
            f"measured on this model at batch {self.batch_size}: {measured} "
            f"({self.seconds:.1f} s{budget}, counted in the fit's time{left_out}{trained}); "
            f"{kept}"
        )


def search_compile_options(
    model,
    fit,
    x,
    y,
    sample_weight,
    batch_size,
    candidates,
    run_steps=None,
    budget_share=0.05,
    margin=0.05,
    keep_training=False,
):
    """Measures `candidates` on `model` and sets the fastest on it.

    Each candidate is timed over a short epoch of `fit` (see
    `keras_fastrain.batching.step_timing.time_steps`) from the same
    weights: the model, its optimizer and metrics are put back as they were
    after the search (with `keep_training=True`, each candidate trains on
    fresh rows and the model keeps those steps). The model is left set to
    the kept setting, with the training step Keras compiled while measuring
    it.

    Args:
        model: A compiled `keras.Model`.
        fit: Callable. The `fit` to measure through (Keras's own, so that
            FastModel's parts do not apply twice).
        x, y, sample_weight: Training arrays (each worker's share).
        batch_size: Integer. The batch to measure at.
        candidates: Sequence of `(jit_compile, steps_per_execution)` pairs;
            the first is the baseline, kept unless another beats it.
        run_steps: Integer or `None`. The steps of the run the search
            serves: its budget is `budget_share` of their time at the
            baseline's pace, and no candidate starts once the time spent
            plus twice the costliest candidate so far (XLA compiles for
            longer) would pass it (the baseline
            always runs). `None`: no budget. Defaults to `None`.
        budget_share: Float in (0, 1]. Defaults to 0.05.
        margin: Float in [0, 1). How much faster than the baseline a
            candidate must be to be kept. Defaults to 0.05.
        keep_training: Bool. `True`: each candidate trains on fresh rows of
            the data (a shuffled order) and the model keeps those steps as
            training, so that the search costs only its compilations and
            the pace lost on slower settings; only the metrics are reset
            (and everything is put back if it fails). Defaults to `False`:
            every candidate from the same weights, put back after.

    Returns:
        A `CompileOptionsSearch`.

    Example:

    ```python
    search = keras_fastrain.compile_search.search_compile_options(
        model, model.fit, x, y, None, 32, [(False, 1), (False, 32), (True, 32)]
    )
    print(search.summary())
    ```
    """
    if not candidates:
        raise ValueError("Invalid value for argument `candidates`: expected at least one setting.")
    margin = check_float("margin", margin, low=0.0, high=1.0, closed=(True, False))
    budget_share = check_float(
        "budget_share", budget_share, low=0.0, high=1.0, closed=(False, True)
    )
    if run_steps is not None:
        run_steps = check_int("run_steps", run_steps, minimum=1)
    keep_training = check_bool("keep_training", keep_training)
    max_seconds = None
    start = time.perf_counter()
    snapshot = ModelSnapshot(model, x)
    rows = RowStream(sample_count(x), np.random.randint(2**31)) if keep_training else None
    stop_training = model.stop_training
    trials, stopped, functions = [], "completed", []
    compiled = (model.jit_compile, model.steps_per_execution)
    kept = 0.0  # the kept training's time at the baseline's pace
    try:
        for jit, steps in candidates:
            spent = time.perf_counter() - start
            costliest = max((t.seconds for t in trials), default=0.0)
            if trials and max_seconds is not None and spent + 2 * costliest > max_seconds:
                stopped = "time budget"
                break
            began = time.perf_counter()
            trained_before = rows.samples if rows is not None else 0
            _set(model, jit, steps)
            seconds_per_step = time_steps(
                model, fit, x, y, sample_weight, batch_size, TIMED_STEPS, rows
            )
            seconds = time.perf_counter() - began
            trials.append(CompileOptionsTrial(jit, steps, batch_size / seconds_per_step, seconds))
            if rows is not None:
                kept += (rows.samples - trained_before) / trials[0].samples_per_second
            functions.append(model.train_function)
            if keep_training:
                model.reset_metrics()
            else:
                snapshot.restore()
            if max_seconds is None and run_steps is not None:
                max_seconds = budget_share * run_steps * seconds_per_step
    except BaseException:  # the model as it came in, its settings too
        snapshot.restore()
        _set(model, *compiled)
        raise
    finally:
        model.stop_training = stop_training
    fastest = max(trials, key=lambda t: t.samples_per_second)
    beats = fastest.samples_per_second > trials[0].samples_per_second * (1 + margin)
    chosen = fastest if beats else trials[0]
    # The kept setting's step function, compiled while it was measured, is
    # the one training uses (no second trace or XLA compilation).
    _set(model, chosen.jit_compile, chosen.steps_per_execution)
    model.train_function = functions[trials.index(chosen)]
    return CompileOptionsSearch(
        trials,
        chosen,
        batch_size,
        time.perf_counter() - start,
        max_seconds,
        stopped,
        rows.steps if rows is not None else 0,
        kept,
    )


def _set(model, jit_compile, steps_per_execution):
    """Sets the two options on a compiled model; its step functions are
    built again on their next use."""
    model.jit_compile = jit_compile
    model.steps_per_execution = steps_per_execution
    model.train_function = model.test_function = model.predict_function = None
