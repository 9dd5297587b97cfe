"""The compile-options part: precision, XLA and steps per compiled call.

At `compile` it decides the `mixed_precision`, `jit_compile` and
`steps_per_execution` options (each `"auto"` with its reason, see
`keras_fastrain.choices`), applies the dtype policy to every layer, and
hands Keras the two compile arguments. An `"auto"` `jit_compile` honours the
other parts' constraints ("no XLA with me"), at `compile` and, for one call,
at `fit` (a batch that grows on TensorFlow).
"""

import contextlib
import typing

import keras

from keras_fastrain import _keras_internals, choices
from keras_fastrain.parts.base import Part
from keras_fastrain.validation import AUTO

__all__ = ["CompileOptionsPart"]


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

    def on_run(self, plan):
        model = plan.model
        if plan.method != "fit" or not model.jit_compile:
            return
        turned_off = _constrained(plan, "jit_compile", plan.options["jit_compile"])
        if turned_off is not None and turned_off.value is False:
            plan.hold(_without_jit_compile(plan, turned_off))


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
