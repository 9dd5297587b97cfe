"""The compile-options part: precision, XLA and steps per compiled call.

At `compile` it decides the `mixed_precision`, `jit_compile` and
`steps_per_execution` options (each `"auto"` with its reason, see
`keras_fastrain.choices`), applies the dtype policy to every layer, and
hands Keras the two compile arguments. An `"auto"` `jit_compile` honours the
other parts' constraints ("no XLA with me"), at `compile` and, for one call,
at `fit` (a batch that grows on TensorFlow).

On TensorFlow, whether XLA pays depends on the model (on a CPU it speeds a
dense network up several times and slows a conv net down), so an `"auto"`
`jit_compile` starts from Keras's own setting and, at the first fit on
arrays long enough to pay for it, is measured on the model (see
`keras_fastrain.compile_search`): a few groups of steps with Keras's
setting and with XLA the other way, within 5% of the run's expected time
(counted in the fit's time). Those steps train on fresh rows of the data
and are kept as training, so the measurement costs only the compilation
and the pace lost on the slower setting. The other is kept for every
later call only if it beats Keras's setting by 5%. Several workers measure
nothing: their measured settings could differ. (JAX needs XLA; torch has
none; steps per call are ruled, as more than one was faster in every model
measured.)
"""

import contextlib
import functools
import math
import typing

import keras

from keras_fastrain import _keras_internals, choices, setup_time
from keras_fastrain.batching.resizable import ResizableDataset
from keras_fastrain.batching.step_timing import MIN_REPEATS, round_up
from keras_fastrain.compile_search import TIMED_STEPS, search_compile_options
from keras_fastrain.distribute.sharding import shard
from keras_fastrain.parts.base import Part
from keras_fastrain.parts.engine import engine_scope
from keras_fastrain.parts.inputs import sample_count
from keras_fastrain.validation import AUTO

__all__ = ["CompileOptionsPart"]

# The share of the run's expected time the measurement may take, and the
# fewest timing epochs each candidate runs (see batching/step_timing.py).
BUDGET_SHARE = 0.05


class CompileOptionsPart(Part):
    """Decides precision, XLA and steps per call; applies the constraints."""

    name = "compile_options"
    options: typing.ClassVar[dict] = {
        "mixed_precision": AUTO,
        "jit_compile": AUTO,
        "steps_per_execution": AUTO,
    }

    def check_option(self, name, value):
        if name == "mixed_precision":
            choices.choose_mixed_precision(value, devices=["cpu:0"])
        elif name == "jit_compile":
            choices.choose_jit_compile(value)
        else:
            choices.choose_steps_per_execution(value)

    def on_compile(self, plan):
        model, options, engine = plan.model, plan.options, plan.engine
        plan.decide(_apply_precision(model, options["mixed_precision"]))
        jit = _constrained(plan, "jit_compile", options["jit_compile"])
        if jit is None:
            jit = choices.choose_jit_compile(
                options["jit_compile"],
                xla_incompatible=_xla_incompatible_layers(model),
                distributed=engine.in_step_replicas,
            )
        steps = choices.choose_steps_per_execution(
            options["steps_per_execution"], distributed=engine.in_step_replicas
        )
        for choice in (jit, steps):
            plan.decide(choice)
            plan.compile_kwargs[choice.option] = choice.value
        model.compile_options_search = None
        model._ruled_jit_compile = model._choices["jit_compile"]  # before any measurement

    def on_run(self, plan):
        model = plan.model
        if plan.method != "fit":
            return
        if hasattr(model, "_ruled_jit_compile") and model.compile_options_search is None:
            _measure(plan)  # once per compile
        if not model.jit_compile:
            return
        turned_off = _constrained(plan, "jit_compile", plan.options["jit_compile"])
        if turned_off is not None and turned_off.value is False:
            plan.hold(_without_jit_compile(plan, turned_off))


def _measure(plan):
    """Measures an `"auto"` `jit_compile` both ways on the fit's data, when
    it can be and the run pays for it, and sets the faster; otherwise says
    why not in the choice."""
    model = plan.model
    candidates = _candidates(plan)
    if len(candidates) < 2:
        return
    why_not, data = _measurable(plan, candidates)
    if why_not:
        kept = model._ruled_jit_compile
        plan.decide(choices.Choice("jit_compile", kept.value, f"{kept.reason}; {why_not}"))
        return
    x, y, sample_weight, batch_size, run_steps = data
    # The measured steps train the model, unless they would train under a
    # loss other than the fit's (`class_weight` is not given to them).
    keep = plan.kwargs.get("class_weight") is None
    if keep:
        plan.keep_start(x)
    with engine_scope(model, plan.engine), setup_time.counted(model, "XLA measurement"):
        # Keras's own fit: FastModel's would apply the parts again.
        keras_fit = functools.partial(keras.Model.fit, model)
        search = search_compile_options(
            model,
            keras_fit,
            x,
            y,
            sample_weight,
            batch_size,
            candidates,
            run_steps=run_steps,
            budget_share=BUDGET_SHARE,
            keep_training=keep,
        )
    model.compile_options_search = search
    plan.decide(choices.Choice("jit_compile", search.chosen.jit_compile, search.summary()))


def _candidates(plan):
    """The `(jit_compile, steps_per_execution)` settings to measure, Keras's
    own XLA setting first; none when there is nothing to measure (XLA given
    or ruled out, or not TensorFlow, where XLA is either needed or absent)."""
    model, options, engine = plan.model, plan.options, plan.engine
    if (
        keras.backend.backend() != "tensorflow"
        or options["jit_compile"] != AUTO
        or (engine is not None and engine.in_step_replicas)
        or plan.constraints_on("jit_compile")
        or _xla_incompatible_layers(model)
    ):
        return []
    keras_jit = model._ruled_jit_compile.value
    steps = model.steps_per_execution
    return [(keras_jit, steps), (not keras_jit, steps)]


def _measurable(plan, candidates):
    """`(why_not, None)` when the fit cannot or need not be measured, else
    `(None, (x, y, sample_weight, batch_size, run_steps))`."""
    engine = plan.engine
    if engine is not None and engine.size > 1:
        return "not measured with several workers, whose settings must agree", None
    x, y, kwargs = plan.x, plan.y, plan.kwargs
    if isinstance(x, ResizableDataset):
        x, y, sample_weight, batch_size = x.x, x.y, x.sample_weight, x.batch_size
    elif sample_count(x) is not None:
        sample_weight = kwargs.get("sample_weight")
        batch_size = plan.batch_size if isinstance(plan.batch_size, int) else None
    else:
        return "not measured: the fit's data is not arrays", None
    batch_size = batch_size or 32
    count = sample_count(x)
    if not count or (y is not None and sample_count(y) != count):
        return "not measured: the arrays' lengths differ", None
    training = math.floor(count * (1.0 - (kwargs.get("validation_split") or 0.0)))
    if training < count and kwargs.get("validation_data") is None:
        # The rows Keras will hold out for validation are never trained on.
        x, y, sample_weight = (shard(a, slice(0, training)) for a in (x, y, sample_weight))
    epochs = max(1, kwargs.get("epochs", 1) - kwargs.get("initial_epoch", 0))
    per_epoch = kwargs.get("steps_per_epoch") or math.ceil(training / batch_size)
    run_steps = epochs * per_epoch
    needed = sum(
        steps + MIN_REPEATS * round_up(TIMED_STEPS, steps) for _, steps in candidates
    )  # the least the measurement trains
    if run_steps * BUDGET_SHARE < needed:
        return (
            f"not measured: the run's {run_steps} steps are too few to measure "
            f"within {BUDGET_SHARE:.0%} of them",
            None,
        )
    return None, (x, y, sample_weight, batch_size, run_steps)


def _constrained(plan, option, requested):
    """The `Choice` the other parts' constraints make of an `"auto"`
    `option`, or `None` when there are none (or the user decided)."""
    constraints = plan.constraints_on(option)
    if requested != AUTO or not constraints:
        return None
    values = {c.value for c in constraints}
    if len(values) > 1:
        raise ValueError(
            f"keras-fastrain's parts disagree on `{option}`: "
            + "; ".join(f"{c.part} needs {c.value!r} ({c.reason})" for c in constraints)
            + f". Set `{option}` yourself."
        )
    return choices.Choice(option, values.pop(), "; ".join(c.reason for c in constraints))


@contextlib.contextmanager
def _without_jit_compile(plan, choice):
    """Runs one `fit` without XLA; the compiled setting and choice come back after."""
    model = plan.model
    compiled_choice = model._choices.get("jit_compile")
    model.jit_compile = False
    model.train_function = model.test_function = model.predict_function = None
    plan.decide(choice)
    try:
        yield
    finally:
        model.jit_compile = True
        model.train_function = model.test_function = model.predict_function = None
        if compiled_choice is not None:
            model._choices["jit_compile"] = compiled_choice


def _apply_precision(model, requested):
    choice = choices.choose_mixed_precision(
        requested, current=keras.mixed_precision.dtype_policy().name
    )
    for layer in _keras_internals.all_layers(model):
        if layer.dtype_policy.name != choice.value:
            layer.dtype_policy = choice.value
    return choice


def _xla_incompatible_layers(model):
    """Class names of the model's layers XLA cannot compile here."""
    layers = [layer for layer in _keras_internals.all_layers(model) if not layer.supports_jit]
    return tuple(dict.fromkeys(type(layer).__name__ for layer in layers))
