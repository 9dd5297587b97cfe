"""Finds the batch size that reaches the target soonest, by training a few
steps at each.

A larger batch runs more samples per second, but each of its samples
teaches less once the batch is past the gradient noise scale. The search
scores each batch by its goodput: throughput times statistical efficiency
(see `keras_fastrain.batching.search`), with the noise scale measured on
the model and data once a batch runs more than `margin` faster than the
base batch (`objective="goodput"`, the default; until then no efficiency
could change the pick, so a search that finds no faster batch does not
pay for the noise scale), or
by throughput alone (`objective="throughput"`). A larger batch is chosen
only when it beats the base batch (`min_batch_size`, Keras's 32 by
default) by more than `margin`; otherwise the base batch is kept.

The search has a time budget (`max_seconds`): by default a share
(`budget_share`, 5%) of the training it serves, estimated from the base
batch's throughput and the fit's epochs. No measurement starts that would
not end within it (its cost guessed at twice the longest so far); a search
cut short keeps the best batch measured.

Each candidate trains one short epoch through `fit`, so it measures what
`fit` will do: the same compiled step, `steps_per_execution` and
distribution. After its first compiled call (which compiles the step for
the new shape, and whose epoch set-up would swamp a small model's steps),
groups of `steps_per_trial` steps are timed, two to five until the two
fastest agree within 3%, and the fastest counts, so that a noisy group does
not pick the batch. Candidates whose steps need more rows than there are
(large batches, or `steps_per_execution` calls of many steps) are fed batch
by batch from a `PyDataset` rather than from a copy of the arrays many
times over; on TensorFlow that feed is a little slower per step, so those
batches are measured on the safe side.

Before a candidate runs, its memory is checked against a budget (on the
CPU, where running out would kill the process); on an accelerator an
out-of-memory error marks it as not fitting, and the memory the failed step
held is handed back. `find` puts the model's variables, its optimizer's
(iterations and slots included) and its metrics back afterwards, so a
search on its own leaves no trace. `FastModel.fit` asks it to keep the
training instead (`keep_training=True`): every candidate then trains on
fresh rows of the data in a shuffled order, and the fit goes on from the
weights the search reached, so that a search costs only its compilations
and the pace lost on candidates slower than the base batch, not the steps
it measured.

With several workers every worker runs every candidate (their steps are
collective), the slowest worker's time counts, a candidate too large for
any worker is too large for all, and the result is broadcast from the
chief, so that every worker trains with the same batch.
"""

import time

import numpy as np

from keras_fastrain import distribute
from keras_fastrain.batching import memory
from keras_fastrain.batching.noise_scale import PROBE_BATCH_SIZE, measure_noise_scale
from keras_fastrain.batching.search import goodput_efficiency, search_batch_size
from keras_fastrain.batching.step_timing import RowStream, round_up, sample_count, time_steps
from keras_fastrain.batching.trials import OUT_OF_MEMORY, OVER_BUDGET, DoesNotFitError
from keras_fastrain.devices import list_devices
from keras_fastrain.distribute.consensus import any_worker
from keras_fastrain.distribute.sharding import shard
from keras_fastrain.scaling import SCALING_RULES
from keras_fastrain.snapshot import ModelSnapshot
from keras_fastrain.validation import (
    AUTO,
    check_arrays,
    check_bool,
    check_choice,
    check_duration,
    check_float,
    check_int,
)

__all__ = ["BatchSizeFinder", "find_batch_size"]

# A measurement not yet run is guessed to cost this many times the longest
# so far (a larger batch, and its step compiled again).
GUESS_FACTOR = 2.0

OBJECTIVES = ("goodput", "throughput")


class BatchSizeFinder:
    """Settings of a batch-size search; `find` runs it on a model.

    Args:
        min_batch_size: Integer >= 1. The first (global) batch tried.
            Defaults to 32.
        max_batch_size: Integer or `None`. No larger batch is tried; also
            bounded by the number of samples. Defaults to `None`.
        max_trials: Integer >= 1. At most this many batch sizes are
            measured. Defaults to 10.
        steps_per_trial: Integer >= 1. Steps per timed group of a
            candidate's measurement (two to five groups), rounded up to
            whole compiled calls (`steps_per_execution`). Defaults to 8.
        margin: Float in [0, 1). Batches within this relative score of the
            best count as equally good; the smallest of them is chosen.
            Defaults to 0.05.
        objective: `"goodput"` (throughput times statistical efficiency,
            from the gradient noise scale measured on `probes` batches once
            a batch runs more than `margin` faster than the base) or
            `"throughput"` (samples per second alone). Defaults to
            `"goodput"`.
        max_seconds: `"auto"`, a number of seconds > 0, or `None`. The
            search's time budget, every measurement and restoring the model
            included (kept training too: the budget bounds how long the fit
            waits for its choice). `"auto"`: `budget_share` of the training it serves,
            estimated from the first batch's throughput and `find`'s
            `epochs`. `None`: no time budget (only `max_trials`). Defaults
            to `"auto"`.
        budget_share: Float in (0, 1). The share of the expected training
            time that `max_seconds="auto"` gives the search. Defaults to
            0.05.
        probes: Integer >= 1. Batches (of at least 256 samples) the noise
            scale is measured on. Defaults to 4.
        learning_rate_rule: `"sqrt"`, `"linear"` or `None`. How
            `FastModel.fit(batch_size="auto")` scales the optimizer's rate
            (taken as tuned for `min_batch_size`) when it trains at a larger
            batch: by `sqrt(B / min_batch_size)`, `B / min_batch_size` or
            not at all; the rate is put back after the fit. Defaults to
            `"sqrt"`.
        memory_budget: `"auto"`, integer bytes, or `None`. The memory one
            batch may take: `"auto"` is half the memory available when the
            search starts on a CPU, and no budget on an accelerator (its
            out-of-memory errors are caught). `None`: no budget. Defaults
            to `"auto"`.

    Example:

    ```python
    finder = keras_fastrain.batching.BatchSizeFinder(max_batch_size=4096, max_trials=6)
    search = finder.find(model, x_train, y_train)  # model: compiled
    print(search.table())
    model.fit(x_train, y_train, batch_size=search.batch_size)
    ```
    """

    def __init__(
        self,
        min_batch_size=32,
        max_batch_size=None,
        max_trials=10,
        steps_per_trial=8,
        margin=0.05,
        memory_budget=AUTO,
        objective="goodput",
        max_seconds=AUTO,
        budget_share=0.05,
        probes=4,
        learning_rate_rule="sqrt",
    ):
        self.min_batch_size = check_int("min_batch_size", min_batch_size, minimum=1)
        self.max_batch_size = (
            None
            if max_batch_size is None
            else check_int("max_batch_size", max_batch_size, minimum=self.min_batch_size)
        )
        self.max_trials = check_int("max_trials", max_trials, minimum=1)
        self.steps_per_trial = check_int("steps_per_trial", steps_per_trial, minimum=1)
        self.margin = check_float("margin", margin, low=0.0, high=1.0, closed=(True, False))
        if not (memory_budget in (AUTO, None) or _is_positive_int(memory_budget)):
            raise ValueError(
                "Invalid value for argument `memory_budget`. Received: "
                f"memory_budget={memory_budget!r}. Expected 'auto', None or a number of "
                "bytes > 0."
            )
        self.memory_budget = memory_budget
        self.objective = check_choice("objective", objective, OBJECTIVES)
        if max_seconds not in (AUTO, None):
            max_seconds = check_duration("max_seconds", max_seconds)
        self.max_seconds = max_seconds
        self.budget_share = check_float(
            "budget_share", budget_share, low=0.0, high=1.0, closed=(False, False)
        )
        self.probes = check_int("probes", probes, minimum=1)
        self.learning_rate_rule = check_choice(
            "learning_rate_rule", learning_rate_rule, SCALING_RULES
        )

    def __repr__(self):
        return (
            f"BatchSizeFinder(min_batch_size={self.min_batch_size}, "
            f"max_batch_size={self.max_batch_size}, max_trials={self.max_trials}, "
            f"steps_per_trial={self.steps_per_trial}, margin={self.margin}, "
            f"memory_budget={self.memory_budget!r}, objective={self.objective!r}, "
            f"max_seconds={self.max_seconds!r}, budget_share={self.budget_share}, "
            f"probes={self.probes}, learning_rate_rule={self.learning_rate_rule!r})"
        )

    def find(
        self,
        model,
        x,
        y=None,
        sample_weight=None,
        multiple_of=1,
        fit=None,
        epochs=1,
        keep_training=False,
    ):
        """Searches the batch size for training `model` on `x`, `y`.

        Args:
            model: A compiled `keras.Model`.
            x, y, sample_weight: The training arrays (this worker's share
                when workers feed their own data).
            multiple_of: Integer. Candidates are multiples of it (the
                number of replicas or workers that split a batch).
            fit: The `fit` to time; defaults to `model.fit`. Batch sizes
                given to it are global batches divided by the workers that
                feed their own share.
            epochs: Number > 0. The epochs of the training the search
                serves: `max_seconds="auto"` gives the search
                `budget_share` of their expected time. Defaults to 1.
            keep_training: Bool. `False`: the model, its optimizer and its
                metrics are put back as they were after the search.
                `True`: the steps the search trains are kept as training
                (each on fresh rows of the data, in a shuffled order), so
                that the search costs only its compilations and the pace it
                loses on slower candidates; only the metrics are reset
                (and everything is put back if the search fails).
                `FastModel.fit(batch_size="auto")` keeps them. Defaults to
                `False`.

        Returns:
            A `keras_fastrain.batching.BatchSizeSearch`.
        """
        if getattr(model, "optimizer", None) is None:
            raise ValueError("Compile the model before searching its batch size.")
        count = check_arrays("x", x)
        engine = distribute.current()
        feeders = 1 if engine.feeds_global_batch() else engine.size
        multiple_of = int(np.lcm(multiple_of, feeders))
        fit = fit or model.fit
        epochs = check_float("epochs", epochs, low=0.0, closed=(False, True))
        keep_training = check_bool("keep_training", keep_training)
        started = time.perf_counter()
        budget = self._budget()
        per_sample = memory.training_bytes_per_sample(model, shard(x, np.arange(1)))
        snapshot = ModelSnapshot(model, x)
        rows = None
        if keep_training:
            seed = np.random.randint(2**31)
            if engine.size > 1:  # workers that feed one global batch read alike
                seed = engine.broadcast(np.asarray([seed]), 0)[0]
            rows = RowStream(count, int(seed))
        min_batch = round_up(self.min_batch_size, multiple_of)
        limit = count * feeders
        if self.max_batch_size is not None:
            limit = min(limit, self.max_batch_size)
        limit = max(limit // multiple_of * multiple_of, min_batch)

        limit_samples = count * feeders  # the run's samples per epoch
        noise = {}
        # "kept": the time the kept training would have taken at the base
        # batch's pace; "longest": the longest measurement.
        clock = {"longest": 0.0, "max_seconds": None, "kept": 0.0, "out_of_memory": False}
        walls = {}  # each measurement's wall time
        if self.max_seconds != AUTO:
            clock["max_seconds"] = self.max_seconds

        def measure(batch_size):
            begun = time.perf_counter()
            trained_before = rows.samples if rows is not None else 0
            local = batch_size // feeders
            estimate = local * per_sample
            too_big = budget is not None and estimate > budget
            if any_worker(too_big):
                raise DoesNotFitError(
                    OVER_BUDGET, f"~{estimate / 2**20:,.0f} MiB > {budget / 2**20:,.0f} MiB"
                )
            try:
                seconds = time_steps(
                    model, fit, x, y, sample_weight, local, self.steps_per_trial, rows
                )
                out_of_memory = ""
            except Exception as error:
                if not memory.is_out_of_memory(error):
                    raise
                seconds, out_of_memory = None, _first_line(error)
                memory.release_cached_memory()
                clock["out_of_memory"] = True
            if any_worker(bool(out_of_memory)):
                if rows is not None:
                    # A failed fit can leave the model without its values
                    # (JAX releases them while it trains): every worker
                    # goes back to the model as the search got it.
                    snapshot.restore()
                    rows.forget_training()
                    clock["kept"] = 0.0
                raise DoesNotFitError(OUT_OF_MEMORY, out_of_memory)
            if engine.size > 1:  # every worker waits for the slowest
                seconds = float(engine.allreduce(float(seconds), "max"))
            measured = time.perf_counter() - begun  # the noise scale is not guessed again
            rate = batch_size / seconds
            if not noise:  # the base batch: the run's pace
                if self.max_seconds == AUTO:
                    run_seconds = epochs * limit_samples / rate
                    clock["max_seconds"] = self.budget_share * run_seconds
                noise["base"], noise["rate"] = batch_size, rate
            elif (
                self.objective == "goodput"
                and "scale" not in noise
                and rate > noise["rate"] * (1 + self.margin)
            ):
                # An efficiency is at most 1, so only a batch faster than
                # the base can have a better goodput: the noise scale is
                # measured once one is (every worker sees the same rates).
                probing = time.perf_counter()
                noise["scale"] = self._noise_scale(model, x, y, sample_weight, local)
                noise["seconds"] = time.perf_counter() - probing
            trained = (rows.samples - trained_before) * feeders if rows is not None else 0
            clock["kept"] += trained / noise["rate"]
            walls[batch_size] = time.perf_counter() - begun
            clock["longest"] = max(clock["longest"], measured)
            return seconds

        def efficiency(batch_size):
            if "scale" not in noise:
                return 1.0
            return goodput_efficiency(noise["scale"], noise["base"])(batch_size)

        def out_of_time():
            if clock["max_seconds"] is None:
                return False
            # No measurement that would end past the budget. The guess at
            # its cost is twice the longest so far: a doubled batch trains
            # twice the samples and compiles its step again.
            spent = time.perf_counter() - started + GUESS_FACTOR * clock["longest"]
            return any_worker(spent > clock["max_seconds"])

        # The timer stops its fits by `stop_training`; a search run from a
        # callback of a running fit must not stop that fit.
        stop_training = getattr(model, "stop_training", False)
        failed = True
        try:
            result = search_batch_size(
                measure,
                min_batch_size=min_batch,
                max_batch_size=limit,
                max_trials=self.max_trials,
                margin=self.margin,
                multiple_of=max(8, multiple_of) // multiple_of * multiple_of,
                efficiency=None if self.objective == "throughput" else efficiency,
                out_of_time=out_of_time,
            )
            failed = False
        finally:
            model.stop_training = stop_training
            if keep_training and not failed:
                model.reset_metrics()
            else:
                snapshot.restore()
            if clock["out_of_memory"]:  # what the failed steps left (a full
                # collection can take seconds in a long-running process)
                memory.release_cached_memory()
        if rows is not None:
            result.trained_steps, result.trained_samples = rows.steps, rows.samples * feeders
            result.trained_seconds = clock["kept"]
        for trial in result.trials:
            trial.seconds = walls.get(trial.batch_size)
        result.noise_scale = noise.get("scale")
        result.noise_scale_seconds = noise.get("seconds")
        result.max_seconds = clock["max_seconds"]
        if engine.size > 1:
            chosen = engine.broadcast(np.asarray([result.batch_size, result.max_batch_size]), 0)
            result.batch_size, result.max_batch_size = (int(v) for v in chosen)
        result.seconds = time.perf_counter() - started
        return result

    def _noise_scale(self, model, x, y, sample_weight, batch_size):
        """The gradient noise scale at the model's current weights, on
        `probes` random batches of this worker's arrays (averaged over the
        workers)."""
        count = sample_count(x)
        size = min(count, max(PROBE_BATCH_SIZE, batch_size))
        rng = np.random.default_rng(distribute.current().rank)

        def batches():
            for _ in range(self.probes):
                rows = np.sort(rng.choice(count, size=size, replace=False))
                yield tuple(shard(a, rows) for a in (x, y, sample_weight))

        return measure_noise_scale(model, batches(), distribute.current())

    def _budget(self):
        if self.memory_budget != AUTO:
            return self.memory_budget
        kind = list_devices()[0].split(":")[0].lower()
        return memory.default_budget(kind)


def find_batch_size(model, x, y=None, sample_weight=None, **options):
    """Finds the fastest batch size for training `model` on `x`, `y`.

    A shortcut for `BatchSizeFinder(**options).find(model, x, y,
    sample_weight)`; see `BatchSizeFinder` for the options.

    Args:
        model: A compiled `keras.Model`. Its variables, its optimizer's and
            its metrics are put back after the search.
        x: Array, or a list/dict of arrays: the training inputs (this
            worker's share when workers feed their own data).
        y: Array, structure of arrays, or `None`. The targets.
        sample_weight: Array or `None`.
        **options: `BatchSizeFinder`'s arguments (`min_batch_size`,
            `max_batch_size`, `max_trials`, `steps_per_trial`, `margin`,
            `memory_budget`).

    Returns:
        A `keras_fastrain.batching.BatchSizeSearch`.

    Example:

    ```python
    search = find_batch_size(model, x_train, y_train, max_trials=6)
    print(search.table())
    model.fit(x_train, y_train, batch_size=search.batch_size)
    ```
    """
    return BatchSizeFinder(**options).find(model, x, y, sample_weight)


def _first_line(error):
    """The error's message line that says what ran out, shortened (Keras
    puts "Exception encountered when calling ..." first)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if memory.is_out_of_memory(line)]
    return (telling or lines or [type(error).__name__])[0][:160]


def _is_positive_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0
