"""The learning-rate part: `FastModel(learning_rate="auto")`.

Before a fit, within a bounded share of the run's steps (5%, counted in the
fit's time), it runs the learning-rate range test on the model and its
training arrays at the batch the fit trains with (after the batch-size
part has chosen it), then trains a few steps at the optimizer's own rate
and at the suggestion, from the same weights, and keeps the suggestion only
if it trained faster. Both run from the model as the fit got it: when the
XLA measurement or the batch search trained it first (their steps are kept
as training), the test runs from the state before them and the trained
state is put back after. A kept suggestion starts a cosine decay over the
fit's epochs (a `WarmupDecay` with no warm-up, since the comparison has
just trained at the suggestion from these weights; it follows an
`AdaptiveBatchSize` as the batch grows); the optimizer's own rate is put
back after the fit. Whenever the test cannot apply or does not pay (no
arrays, a rate from a schedule, a run too short, no clear curve, the
suggestion no better), the fit trains
exactly as Keras would, and `model.choices["learning_rate"]` says why.
"""

import math
import typing

import keras

from keras_fastrain import choices, setup_time
from keras_fastrain.batching.resizable import ResizableDataset
from keras_fastrain.callbacks.adaptive_batch_size import AdaptiveBatchSize
from keras_fastrain.callbacks.distributed import LearningRateWarmupCallback
from keras_fastrain.callbacks.learning_rate import LearningRateScheduleCallback, rate_during
from keras_fastrain.callbacks.warmup_decay import WarmupDecay
from keras_fastrain.devices import host_array
from keras_fastrain.distribute import Engine
from keras_fastrain.distribute.sharding import shard
from keras_fastrain.learning_rate.compare import compare_rates
from keras_fastrain.learning_rate.finder import LearningRateFinder
from keras_fastrain.parts.base import Part
from keras_fastrain.parts.engine import engine_scope
from keras_fastrain.parts.inputs import sample_count
from keras_fastrain.parts.workers import feeders
from keras_fastrain.scaling import rate_comes_from_schedule
from keras_fastrain.validation import AUTO

__all__ = ["LearningRatePart"]

# The share of the run's steps the test and the comparison may take, and
# the fewest range-test steps worth running.
BUDGET_SHARE = 0.05
MIN_TEST_STEPS = 20
MAX_COMPARE_STEPS = 20
# The range tested starts at 1/100 of the optimizer's rate.
RANGE_BELOW = 100.0
# Callbacks that set the rate themselves: the schedule would fight them.
RATE_SETTERS = (
    keras.callbacks.LearningRateScheduler,
    keras.callbacks.ReduceLROnPlateau,
    LearningRateScheduleCallback,
    LearningRateWarmupCallback,
    WarmupDecay,
)


class LearningRatePart(Part):
    """Finds the learning rate on the user's model when asked (`"auto"`)."""

    name = "learning_rate"
    options: typing.ClassVar[dict] = {"learning_rate": None}

    def check_option(self, name, value):
        if value is None or value == AUTO or isinstance(value, LearningRateFinder):
            return
        raise ValueError(
            f"Invalid value for argument `learning_rate`. Received: learning_rate={value!r}. "
            "Expected None (the optimizer's rate, as Keras), 'auto' or a keras_fastrain."
            "learning_rate.LearningRateFinder (give a fixed rate to the optimizer)."
        )

    def saved_option(self, name, value):
        return AUTO if isinstance(value, LearningRateFinder) else value

    def on_run(self, plan):
        requested = plan.options.get("learning_rate")
        if plan.method != "fit" or requested is None:
            return
        model = plan.model
        optimizer = model.optimizer
        kept = _not_applicable(plan)
        if kept:
            plan.decide(choices.Choice("learning_rate", "kept", kept))
            return
        x, y, sample_weight = _arrays(plan)
        engine = plan.engine or Engine()
        global_batch = plan.global_batch_size or plan.batch_size or 32
        batch = max(1, global_batch // feeders(engine))  # each worker's share
        epochs = max(1, plan.kwargs.get("epochs", 1) - plan.kwargs.get("initial_epoch", 0))
        run_steps = epochs * math.ceil(sample_count(x) / global_batch)
        budget = int(BUDGET_SHARE * run_steps)
        own = float(host_array(optimizer.learning_rate))
        finder = requested if isinstance(requested, LearningRateFinder) else None
        if finder is None:
            test_steps = min(100, budget * 2 // 3)
            if test_steps < MIN_TEST_STEPS:
                plan.decide(
                    choices.Choice(
                        "learning_rate",
                        "kept",
                        f"the run's {run_steps} steps leave {budget} ({BUDGET_SHARE:.0%}) for a "
                        f"range test, under the {MIN_TEST_STEPS} a curve needs",
                    )
                )
                return
            # From well below the optimizer's rate (not 1e-7: few steps).
            finder = LearningRateFinder(
                min(own / RANGE_BELOW, 1.0), 10.0, num_steps=test_steps, batch_size=batch
            )
        compare_steps = max(4, min(MAX_COMPARE_STEPS, budget // 6))
        with (
            engine_scope(model, plan.engine),
            setup_time.counted(model, "learning-rate test"),
            # The model as the user gave it: a range test from weights a
            # measurement has trained suggested rates ten times lower.
            plan.from_start(x),
        ):
            search = finder.find(model, x, y, sample_weight)
            model.learning_rate_search = search
            if search.suggestion is None:
                plan.decide(choices.Choice("learning_rate", own, f"kept: {search.reason}"))
                return
            comparison = compare_rates(
                model,
                x,
                y,
                sample_weight,
                rates=[own, search.suggestion],
                steps=compare_steps,
                batch_size=finder.batch_size,
            )
        model.learning_rate_comparison = comparison
        losses = ", ".join(
            f"{loss:.4g} at {rate:.3g}"
            for rate, loss in zip(comparison.rates, comparison.losses, strict=True)
        )
        if comparison.best == own:
            plan.decide(
                choices.Choice(
                    "learning_rate",
                    own,
                    f"kept: the range test suggested {search.suggestion:.3g}, which trained no "
                    f"faster over {comparison.steps} steps (loss {losses})",
                )
            )
            return
        peak = search.suggestion
        plan.hold(rate_during(model, peak))
        setters = [c for c in plan.callbacks if isinstance(c, RATE_SETTERS)]
        if setters:
            how = f"(no schedule: {type(setters[0]).__name__} sets the rate)"
        else:
            growth = [c for c in plan.callbacks if isinstance(c, AdaptiveBatchSize)]
            # No warm-up: the comparison has just trained at the peak from
            # the fit's starting weights, and a warm-up from a tenth of it
            # cost a conv net's first epoch 3 points of accuracy.
            plan.callbacks.append(
                WarmupDecay(
                    peak, epochs=epochs, warmup=0.0, adaptive_batch_size=(growth or [None])[0]
                )
            )
            how = (
                f"the start of a cosine decay over {epochs} epochs (no warm-up: the "
                "comparison trained at it from the fit's starting weights)"
            )
        plan.decide(
            choices.Choice(
                "learning_rate",
                peak,
                f"{how}; range test {search.seconds:.1f} s ({search.reason}); over "
                f"{comparison.steps} steps it trained faster than {own:.3g} (loss {losses}); "
                f"the optimizer's {own:.3g} is put back after the fit",
                changes_results=True,
            )
        )


def _not_applicable(plan):
    """Why the range test cannot run for this fit, or `""`."""
    if rate_comes_from_schedule(plan.model.optimizer):
        return "the optimizer's rate comes from a LearningRateSchedule, which is kept"
    if _arrays(plan) is None:
        return (
            f"the range test trains on arrays (or a ResizableDataset), and fit was given "
            f"{type(plan.x).__name__}; the optimizer's rate is kept"
        )
    return ""


def _arrays(plan):
    """The training arrays `(x, y, sample_weight)` of the fit, or `None`."""
    if isinstance(plan.x, ResizableDataset):
        return plan.x.x, plan.x.y, plan.x.sample_weight
    count = sample_count(plan.x)
    if count is None:
        return None
    weights = plan.kwargs.get("sample_weight")
    fraction = plan.kwargs.get("validation_split") or 0.0
    if not fraction or plan.kwargs.get("validation_data") is not None:
        return plan.x, plan.y, weights
    head = slice(0, math.floor(count * (1.0 - fraction)))  # not the validation rows
    return shard(plan.x, head), shard(plan.y, head), shard(weights, head)
