"""The augmentation part: random transforms of the inputs inside the train step.

FastModel's `augmentation=` option is an `ImageAugmentation` (or any Keras
layer) run on the model's inputs in training only, inside `call`, so it is
part of the compiled train step on every backend and its random state is
model state. At `compile` the part builds it on the model's input shape, so
a non-image input fails there, not in the first step; on TensorFlow it asks
for no XLA, because TensorFlow's image transforms have no XLA kernel.
"""

import functools
import inspect

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.parts.base import Constraint, Part

__all__ = ["AugmentationPart", "augmenting", "input_shape"]


class AugmentationPart(Part):
    """Builds the model's augmentation; no XLA with it on TensorFlow."""

    name = "augmentation"

    def constraints(self, plan):
        if plan.model.augmentation is None or keras.backend.backend() != "tensorflow":
            return ()
        # TensorFlow's image transforms (ours and Keras's Random* layers)
        # have no XLA kernel, and an unbuilt augmentation cannot say yet.
        name = type(plan.model.augmentation).__name__
        return (
            Constraint("jit_compile", False, f"XLA cannot compile {name} on TensorFlow", self.name),
        )

    def on_compile(self, plan):
        augmentation = plan.model.augmentation
        if augmentation is None or augmentation.built:
            return
        shape = input_shape(plan.model)
        if shape is not None:
            augmentation.build(shape)


def augmenting(call):
    """Wraps a model's `call` so that its inputs are augmented in training.

    The augmentation runs inside `call`, so it is part of the compiled train
    step on every backend (JAX's stateless step calls `call` directly), and
    its random state is model state. A `call` without a `training` argument
    is declared to take one (keyword-only, see
    `_keras_internals.declare_training_argument`); the user's own `call` is
    still called with exactly the arguments it takes.
    """
    if getattr(call, "_fastrain_augmenting", False):
        return call
    signature = inspect.signature(call)
    takes_training = "training" in signature.parameters
    # Keras may pass the inputs by their name (`call(images=...)`).
    inputs_name = list(signature.parameters)[1]

    @functools.wraps(call)
    def augmenting_call(self, *args, training=None, **kwargs):
        augmentation = getattr(self, "augmentation", None)
        if augmentation is not None:
            inputs = args[0] if args else kwargs[inputs_name]
            if training:
                inputs = augmentation(inputs, training=True)
            elif not augmentation.built:
                # Its state is model state: create it whenever the model builds.
                augmentation.build(tuple(inputs.shape))
            if args:
                args = (inputs, *args[1:])
            else:
                kwargs[inputs_name] = inputs
        if takes_training:
            kwargs["training"] = training
        return call(self, *args, **kwargs)

    if not takes_training:
        _keras_internals.declare_training_argument(augmenting_call, signature)
    augmenting_call._fastrain_augmenting = True
    return augmenting_call


def input_shape(model):
    """The model's single input shape if known, else `None`."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        wrapped = getattr(model, "model", None)
        inputs = getattr(wrapped, "inputs", None) if isinstance(wrapped, keras.Model) else None
    if inputs and len(inputs) == 1:
        return tuple(inputs[0].shape)
    return None
