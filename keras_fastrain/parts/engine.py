"""The engine part: where the model trains.

At `compile` it resolves the `distribute` option to a
`keras_fastrain.distribute.Engine` (one device, several local devices, or
one of several workers), lets the engine prepare the optimizer, asks for no
XLA where the engine adds operations XLA cannot compile, and moves variables
made before the engine was chosen onto it. Every call then runs inside the
engine's scope, and `predict` pads array inputs whose last batch would not
split evenly over the replicas.
"""

import typing

import keras
import numpy as np

from keras_fastrain.choices import Choice
from keras_fastrain.distribute import (
    MULTI_WORKER_ENGINES,
    Engine,
    check_distribute,
    resolve_engine,
)
from keras_fastrain.parts.base import Constraint, Part
from keras_fastrain.parts.inputs import sample_count
from keras_fastrain.validation import AUTO

__all__ = ["EnginePart", "engine_scope"]


class EnginePart(Part):
    """Resolves the engine and runs every call inside its scope."""

    name = "engine"
    options: typing.ClassVar[dict] = {"distribute": AUTO}

    def check_option(self, name, value):
        check_distribute(value)

    def saved_option(self, name, value):
        if not isinstance(value, str) or value in MULTI_WORKER_ENGINES:
            # A strategy object or a worker's job belongs to this process;
            # the loading one decides from its own environment.
            return AUTO
        return value

    def on_compile(self, plan):
        plan.engine = engine = resolve_engine(plan.options["distribute"])
        plan.model._engine = engine
        plan.decide(Choice("distribute", engine.describe(), engine.reason))
        plan.optimizer = engine.prepare_optimizer(plan.optimizer)

    def constraints(self, plan):
        engine = plan.engine
        if engine is None or not engine.xla_incompatible:
            return ()
        names = ", ".join(engine.xla_incompatible)
        return (Constraint("jit_compile", False, f"XLA cannot compile {names}", self.name),)

    def on_run(self, plan):
        plan.hold(engine_scope(plan.model, plan.engine))
        if plan.method == "predict":
            _pad_for_replicas(plan)


def engine_scope(model, engine):
    """Moves `model`'s variables made outside `engine` onto it (the
    optimizer's and metrics' too once compiled); returns the engine's
    scope, to enter for `compile`, `fit`, `evaluate` and `predict`."""
    engine = engine or Engine()
    variables = list(model.variables)
    if model.compiled:
        optimizer = getattr(model, "optimizer", None)
        variables += list(optimizer.variables if optimizer else []) + model.metrics_variables
    if engine.adopt(model, variables):
        # Compiled step functions captured the old variables.
        model.train_function = model.test_function = model.predict_function = None
    return engine.scope()


def _pad_for_replicas(plan):
    """Pads array inputs to a multiple of the replicas; drops the padding's
    outputs from the result."""
    count = sample_count(plan.x)
    replicas = plan.engine.num_replicas if plan.engine else 1
    padding = 0 if count is None else (-count) % replicas
    if not padding:
        return
    plan.x = keras.tree.map_structure(lambda a: np.concatenate([a, a[:padding]]), plan.x)
    plan.results.append(lambda outputs: keras.tree.map_structure(lambda a: a[:count], outputs))
