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
then frozen (`stages` bounds how many). The fit ends with every layer and
variable as trainable as it began, so a later fit trains them all again
(a fit that fails is put back at the next fit's start). A frozen
`BatchNormalization` layer runs in inference mode, as Keras's `trainable =
False` makes it. An optimizer with `use_ema` is refused: Keras writes the
average only into the weights still training when the fit ends. The
stages are shares of the `epochs` given to `fit`: a fit stopped early (at
a target) ends before its later stages.
"""

import math
import warnings

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.callbacks.step_variants import (
    FitProgress,
    StepVariants,
    innermost_model,
    refuse_jax_nnx,
)
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
        self._layers, self._saved = None, {"layers": [], "variables": []}
        self._variants = self._step = None
        self._progress = FitProgress()

    def frozen_at(self, progress, freezable):
        """How many of `freezable` layers are frozen at `progress`, the
        share of the fit done."""
        if progress < self.freeze_start:
            return 0
        ramp = (progress - self.freeze_start) / (1.0 - self.freeze_start)
        stage = min(self.stages, math.floor(ramp * self.stages) + 1)
        # Rounded up, so that the first stage freezes a layer from
        # `freeze_start` on; never past `freeze_level`'s share.
        share = self.freeze_level * freezable
        return min(math.floor(share + 1e-9), math.ceil(share * stage / self.stages - 1e-9))

    def on_train_begin(self, logs=None):
        model = self.model
        refuse_jax_nnx(self)
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        if getattr(optimizer, "use_ema", False):  # a loss-scaling optimizer's inner one too
            raise ValueError(
                "LayerFreezing cannot train with an optimizer that keeps a moving average of "
                "the weights (use_ema, FastModel's ema=): Keras puts the average into the "
                "weights still training when the fit ends, and frozen layers are not. Remove "
                "one of the two."
            )
        # This fit's settings to put back, whatever this callback does later.
        saved = {"layers": [], "variables": []}
        # First: a fit that did not end may have left layers frozen.
        self._variants = StepVariants(model, self, on_close=lambda: _restore(model, saved))
        self._saved = saved
        self._layers = None  # found once the model is built (TensorFlow builds it in fit)
        self.frozen, self.stages_run = 0, [0]
        self._progress = FitProgress()
        self._step = None
        if model.built and model.weights:
            self._find_layers()

    def on_epoch_begin(self, epoch, logs=None):
        self._progress.epoch_begin(self.params, epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self._layers is None:
            if not (self.model.built and self.model.weights):  # its first step builds it
                self._variants.use(None)
                return
            self._find_layers()
        frozen = self.frozen_at(self._progress.at(batch), len(self._layers))
        if frozen > self.frozen:
            self._freeze(frozen)
        self._variants.use(None if frozen == 0 else frozen, self._step)

    def on_train_end(self, logs=None):
        if self._variants is not None:
            self._variants.close()  # the settings put back too
        self._variants = self._step = None

    def _find_layers(self):
        model = self.model
        inner = innermost_model(model)  # the layers of a model FastModel wraps
        layers = [layer for layer in inner.layers if layer.trainable_weights]
        if len(layers) < 2:
            self._variants.close()
            self._variants = None
            raise ValueError(
                f"LayerFreezing freezes a model's first layers and keeps the last one "
                f"training, and model {model.name!r} has {len(layers)} layer(s) with "
                "trainable weights: remove LayerFreezing for this model."
            )
        self._layers = layers[:-1]
        # Every setting `trainable = False` on a layer changes: its own, its
        # inner layers' and each of its variables'.
        self._saved["layers"] = [
            (layer, layer.trainable)
            for top in self._layers
            for layer in _keras_internals.all_layers(top)
        ]
        self._saved["variables"] = [(v, v.trainable) for top in self._layers for v in top.weights]
        if not model.optimizer.built:  # for every variable, not the first stage's
            model.optimizer.build(model.trainable_variables)
        if keras.backend.backend() == "jax":
            self._step = _jax_frozen_step(model, model.train_step)

    def _freeze(self, count):
        # Keras's JAX trainer holds the values of the variables it trains by
        # position: they go back into the variables before the list changes,
        # the next step reads them again, and the state it holds meanwhile
        # follows the new order.
        _keras_internals.sync_jax_state(self.model)
        for layer in self._layers[self.frozen : count]:  # freezing only grows in a fit
            layer.trainable = False
        _keras_internals.renew_jax_state(self.model)
        self.frozen = count
        if count and count not in self.stages_run:
            self.stages_run.append(count)


def _restore(model, saved):
    """Every layer and variable of `saved` as trainable as before the fit."""
    try:
        _keras_internals.sync_jax_state(model)  # by position, as frozen
    finally:
        for layer, trainable in saved["layers"]:  # parents first, then their layers
            layer.trainable = trainable
        for variable, trainable in saved["variables"]:
            variable.trainable = trainable


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
