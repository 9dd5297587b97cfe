"""The Keras styles of building a FastModel, as Keras has them.

`FastModel(inputs, outputs)` builds a `FunctionalFastModel`,
`FastModel(model)` a `WrappedFastModel`, and `FastSequential([...])` is
`keras.Sequential` as a FastModel. A subclass of FastModel with its own
`call` needs nothing here.
"""

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.model.fast_model import FastModel
from keras_fastrain.parts.pruning import pruning_arguments
from keras_fastrain.pruning import prune_low_magnitude, strip_pruning
from keras_fastrain.pruning.callbacks import pruning_wrappers

__all__ = ["FastSequential", "FunctionalFastModel", "WrappedFastModel"]


@keras.saving.register_keras_serializable(package="keras_fastrain")
class FunctionalFastModel(FastModel, _keras_internals.Functional, style="functional"):
    """What `FastModel(inputs, outputs)` returns: a functional FastModel."""

    call = _keras_internals.Functional.call

    def __init__(self, inputs, outputs, *args, pruning=None, **kwargs):
        if pruning is not None:
            graph = _keras_internals.Functional(inputs, outputs)
            if not pruning_wrappers(graph):  # a loaded model has its wrappers already
                pruned = prune_low_magnitude(graph, **pruning_arguments(pruning))
                inputs, outputs = pruned.inputs, pruned.outputs
        super().__init__(inputs, outputs, *args, **kwargs)


@keras.saving.register_keras_serializable(package="keras_fastrain")
class FastSequential(FastModel, keras.Sequential):
    """`keras.Sequential` as a FastModel: `FastSequential([layers], **options)`.

    Args:
        layers: List of layers (a `keras.Input` may come first), or `None`
            to `add()` them later. Defaults to `None`.
        pruning: `None` (default), a pruning schedule, or a dict of
            `prune_low_magnitude`'s arguments, as for `FastModel`. The
            prunable layers in `layers` are wrapped at construction; layers
            added later with `add()` are not.
        *args: `keras.Sequential`'s other positional arguments (`trainable`,
            `name`).
        **kwargs: `FastModel`'s options (`distribute`, `augmentation`,
            `mixed_precision`, `jit_compile`, `steps_per_execution`,
            `input_pipeline`, `learning_rate`, `ema`, `label_smoothing`,
            `selective_backprop`, `progressive_resizing`, `layer_freezing`) and
            `keras.Sequential`'s keyword arguments (`trainable`, `name`).

    Example:

    ```python
    model = keras_fastrain.FastSequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        augmentation={"rotation_range": 10},
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5)
    ```
    """

    call = keras.Sequential.call

    def __init__(self, layers=None, *args, pruning=None, **kwargs):
        if pruning is not None and not layers:
            raise ValueError(
                "Invalid value for argument `layers`. Received: layers=None with pruning. "
                "Expected the layers at construction: FastSequential wraps them for pruning "
                "then, and layers added later with add() would not be pruned."
            )
        if pruning is not None and layers:
            graph = keras.Sequential(layers)
            if not pruning_wrappers(graph):
                graph = prune_low_magnitude(graph, **pruning_arguments(pruning))
            built = graph.built and graph.inputs  # a Sequential without an Input has none
            layers = [*graph.inputs[:1], *graph.layers] if built else graph.layers
        super().__init__(layers, *args, **kwargs)


@keras.saving.register_keras_serializable(package="keras_fastrain")
class WrappedFastModel(FastModel, style="wrapped"):
    """What `FastModel(model)` returns: FastModel around an existing model.

    The existing model's layers and weights are used as they are (not
    copied); its compile state is not, so compile the FastModel.
    """

    def __init__(self, model, pruning=None, **kwargs):
        if not isinstance(model, keras.Model):
            raise TypeError(
                "Invalid value for argument `model`. "
                f"Received: model={model!r}. Expected a keras.Model."
            )
        kwargs.setdefault("name", f"fast_{model.name}")
        if pruning is not None and not pruning_wrappers(model):
            model = prune_low_magnitude(model, **pruning_arguments(pruning))
        super().__init__(**kwargs)
        self.model = model
        if model.built:
            self.built = True

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def strip_pruning(self):
        """Returns the wrapped model without pruning wrappers."""
        return strip_pruning(self.model)

    def get_config(self):
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        return super().from_config(config, custom_objects=custom_objects)
