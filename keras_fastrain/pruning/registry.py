"""Which layers pruning takes, and which of their weights it prunes.

`PRUNABLE` lists the Keras layers with weights worth pruning; any layer with
tfmot's `get_prunable_weights()` method (`PrunableLayer`) is taken too, and
the `NOT_PRUNED` layers, which have nothing to prune, can still be wrapped
and run unchanged, as with tfmot.
"""

import keras

__all__ = ["is_prunable", "is_wrappable", "prunable_weights", "PrunableLayer"]

# The Keras layers with weights worth pruning, and which weights those are.
PRUNABLE = (
    (keras.layers.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel")),
    (keras.layers.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel")),
    (keras.layers.Dense, ("kernel",)),
    (keras.layers.EinsumDense, ("kernel",)),
    (keras.layers.Conv1D, ("kernel",)),
    (keras.layers.Conv2D, ("kernel",)),
    (keras.layers.Conv3D, ("kernel",)),
    (keras.layers.Conv1DTranspose, ("kernel",)),
    (keras.layers.Conv2DTranspose, ("kernel",)),
    (keras.layers.Conv3DTranspose, ("kernel",)),
    (keras.layers.DepthwiseConv2D, ("kernel",)),
    (keras.layers.Embedding, ("embeddings",)),
    # A recurrent layer's cell holds its kernels (tfmot prunes both).
    (keras.layers.SimpleRNN, ("cell.kernel", "cell.recurrent_kernel")),
    (keras.layers.GRU, ("cell.kernel", "cell.recurrent_kernel")),
    (keras.layers.LSTM, ("cell.kernel", "cell.recurrent_kernel")),
)

# Keras layers with no weights worth pruning, which tfmot still lets one wrap
# (they run unchanged inside the wrapper).
NOT_PRUNED = tuple(
    getattr(keras.layers, name)
    for name in (
        "Activation",
        "ActivityRegularization",
        "Add",
        "AlphaDropout",
        "Average",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "BatchNormalization",
        "Concatenate",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
        "Dot",
        "Dropout",
        "ELU",
        "Flatten",
        "GaussianDropout",
        "GaussianNoise",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "GroupNormalization",
        "Identity",
        "InputLayer",
        "LayerNormalization",
        "LeakyReLU",
        "Masking",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "Maximum",
        "Minimum",
        "Multiply",
        "Permute",
        "PReLU",
        "ReLU",
        "RepeatVector",
        "Rescaling",
        "Reshape",
        "Softmax",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "Subtract",
        "UnitNormalization",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
    )
    if hasattr(keras.layers, name)
)


class PrunableLayer:
    """tfmot's interface for a custom layer that says which weights to prune.

    Subclass it (with `keras.layers.Layer`) and implement
    `get_prunable_weights()`; `PruneLowMagnitude` then prunes those weights.
    Any layer with that method is taken the same way.

    Example:

    ```python
    class MyDense(keras.layers.Dense, keras_fastrain.pruning.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]


    layer = keras_fastrain.pruning.prune_low_magnitude(MyDense(10))
    ```
    """

    def get_prunable_weights(self):
        """The layer's weights to prune (a list of variables)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_prunable_weights().")


def is_prunable(layer):
    """Whether `layer` has weights `PruneLowMagnitude` knows how to prune:
    a Keras layer listed in `PRUNABLE`, or one with tfmot's
    `get_prunable_weights()` method."""
    return hasattr(layer, "get_prunable_weights") or any(
        isinstance(layer, cls) for cls, _ in PRUNABLE
    )


def is_wrappable(layer):
    """Whether `PruneLowMagnitude` takes `layer`: a prunable layer, or one of
    the `NOT_PRUNED` layers, which it runs unchanged."""
    return is_prunable(layer) or isinstance(layer, NOT_PRUNED)


def prunable_weights(layer):
    """The weights of a built `layer` that pruning masks."""
    if hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    for cls, names in PRUNABLE:
        if isinstance(layer, cls):
            return [_attribute(layer, name) for name in names]
    return []


def _attribute(layer, path):
    for name in path.split("."):
        layer = getattr(layer, name)
    return layer
