"""`LayerFreezing`: stop training the first layers late in a fit.

The first layers of a network settle early (they learn edges and textures),
while their backward pass is among the dearest: they see the largest
activations, and a gradient for them has to pass through every later
layer. Layer freezing (Raghu et al. 2017, "SVCCA"; Composer's
`LayerFreezing`) stops training them once they have settled: from
`freeze_start` of the fit on, the first layers are frozen one stage at a
time, until `freeze_level` of them are frozen at the end. A frozen layer
still runs forward, but the step computes no gradient for it, and none for
the layers before it.

A layer here is one of the model's top-level layers that has trainable
weights (a nested model counts as one; the layers of a model FastModel
wraps are the wrapped model's), in the model's order; the last one
always keeps training. Each stage compiles the step once with the layers
then frozen (`stages` bounds how many). The fit ends with every layer as
trainable as it began, so a later fit trains them all again. A frozen
`BatchNormalization` layer runs in inference mode, as Keras's `trainable =
False` makes it.
"""

import math
import warnings

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.callbacks.step_variants import StepVariants, fit_progress, innermost_model
from keras_fastrain.validation import check_float, check_int

__all__ = ["LayerFreezing"]


class LayerFreezing(keras.callbacks.Callback):
    """Freezes the model's first layers, stage by stage, late in a fit.

    Args:
        freeze_start: Float in [0, 1). The share of the fit's epochs after
            which freezing starts. Defaults to 0.5.
        freeze_level: Float in (0, 1]. The share of the freezable layers
            (those with trainable weights, all but the last) frozen by the
            end of the fit. Defaults to 1.0.
        stages: Integer >= 1. Freezing moves on at most this many times
            (each compiles the step once). Defaults to 4.

    `frozen` is the number of layers frozen at the last step, and `stages_run`
    the frozen counts the fit went through.

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[LayerFreezing(freeze_start=0.5)])
    ```
    """

    def __init__(self, freeze_start=0.5, freeze_level=1.0, stages=4):
        super().__init__()
        self.freeze_start = check_float(
            "freeze_start", freeze_start, low=0.0, high=1.0, closed=(True, False)
        )
        self.freeze_level = check_float(
            "freeze_level", freeze_level, low=0.0, high=1.0, closed=(False, True)
        )
        self.stages = check_int("stages", stages, minimum=1)
        self.frozen = 0
        self.stages_run = []
        self._layers, self._settings = [], []
        self._variants = self._step = None
        self._epoch = 0

    def frozen_at(self, progress, freezable):
        """How many of `freezable` layers are frozen at `progress`, the
        share of the fit done."""
        if progress < self.freeze_start:
            return 0
        ramp = (progress - self.freeze_start) / (1.0 - self.freeze_start)
        stage = min(self.stages, math.floor(ramp * self.stages) + 1)
        return math.floor(self.freeze_level * freezable * stage / self.stages)

    def on_train_begin(self, logs=None):
        inner = innermost_model(self.model)  # the layers of a model FastModel wraps
        layers = [layer for layer in inner.layers if layer.trainable_weights]
        if len(layers) < 2:
            raise ValueError(
                f"LayerFreezing freezes a model's first layers and keeps the last one "
                f"training, and model {self.model.name!r} has {len(layers)} layer(s) with "
                "trainable weights: remove LayerFreezing for this model."
            )
        self._layers = layers[:-1]
        # Each layer's own setting, nested models' layers included (setting
        # a model's `trainable` sets all of its layers').
        self._settings = [(layer, layer.trainable) for top in self._layers for layer in _walk(top)]
        self.frozen, self.stages_run = 0, [0]
        self._variants = StepVariants(self.model, self)
        self._step = None
        if keras.backend.backend() == "jax":
            self._step = _jax_frozen_step(self.model, self.model.train_step)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        progress = fit_progress(self.params, self._epoch, batch)
        frozen = self.frozen_at(progress, len(self._layers))
        if frozen > self.frozen:
            self._freeze(frozen)
        self._variants.use(None if frozen == 0 else frozen, self._step)

    def on_train_end(self, logs=None):
        if self._variants is None:
            return
        _keras_internals.sync_jax_state(self.model)
        for layer, trainable in self._settings:  # parents first, then their layers
            layer.trainable = trainable
        self._variants.close()
        self._variants = self._step = None

    def _freeze(self, count):
        # Keras's JAX trainer holds the values of the variables it trains by
        # position: they go back into the variables before the list changes,
        # and the next step reads them again.
        _keras_internals.sync_jax_state(self.model)
        for layer in self._layers[self.frozen : count]:  # freezing only grows in a fit
            layer.trainable = False
        self.frozen = count
        if count and count not in self.stages_run:
            self.stages_run.append(count)


def _jax_frozen_step(model, keras_step):
    """Keras's JAX `train_step` for a model with frozen layers.

    Keras's JAX step hands the optimizer the values of the variables it
    trains, and the optimizer takes exactly the list it was built with
    (`stateless_apply`). While the step is traced, the optimizer is given
    that whole list instead: the frozen variables' values (from the step's
    non-trainable state) with no gradient, which it leaves as they are,
    slots included; their values are dropped from its answer again.
    """
    built_with = list(model.trainable_variables)  # before any layer is frozen
    optimizer = model.optimizer

    def step(state, data):
        non_trainable = dict(zip(map(id, model.non_trainable_variables), state[1], strict=True))
        keras_apply = optimizer.stateless_apply

        def apply(optimizer_values, grads, trainable_values):
            trained = model.trainable_variables
            pairs = zip(grads, trainable_values, strict=True)
            given = dict(zip(map(id, trained), pairs, strict=True))
            frozen = {key: (None, value) for key, value in non_trainable.items()}
            full = [given.get(id(v)) or frozen[id(v)] for v in built_with]
            with warnings.catch_warnings():  # "Gradients do not exist": frozen on purpose
                warnings.simplefilter("ignore")
                values, optimizer_values = keras_apply(
                    optimizer_values, [g for g, _ in full], [v for _, v in full]
                )
            kept = {id(v): value for v, value in zip(built_with, values, strict=True)}
            return [kept[id(v)] for v in trained], optimizer_values

        optimizer.stateless_apply = apply
        try:
            return keras_step(state, data)
        finally:
            del optimizer.stateless_apply  # the class's method again

    return step


def _walk(layer):
    """`layer`, then the layers of a nested model, depth first."""
    yield layer
    for inner in getattr(layer, "layers", None) or ():
        yield from _walk(inner)
