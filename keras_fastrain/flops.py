"""Analytic FLOP counts of a Keras model, per layer and per sample.

One multiply-add counts as 2 FLOPs. Shapes come from each built layer's
`get_build_config()` (its input shape) and `compute_output_shape()`, which
works for Sequential, functional and subclassed models alike. A training step
costs about three forward passes (forward, then the backward pass through the
activations and to the weights; Kaplan et al. 2020), which is the factor
`TRAIN_FLOPS_PER_FORWARD_FLOP` used for achieved FLOP/s.

Layers whose cost this module does not know, or whose shapes it cannot find,
are reported with `flops=None` (totals are then marked as a lower bound).
Reshapes, dropout, embeddings and augmentation layers count as free.
"""

import dataclasses
import math

import keras

__all__ = [
    "elements_per_sample",
    "layer_flops",
    "layer_shapes",
    "LayerCost",
    "leaf_layers",
    "model_costs",
]

TRAIN_FLOPS_PER_FORWARD_FLOP = 3

# Element-wise layers: FLOPs per output element.
_ELEMENTWISE = {
    "Activation": 1,
    "ReLU": 1,
    "LeakyReLU": 2,
    "PReLU": 2,
    "ELU": 3,
    "Softmax": 3,
    "Add": 1,
    "Subtract": 1,
    "Multiply": 1,
    "Average": 1,
    "Maximum": 1,
    "Minimum": 1,
    "Rescaling": 2,
    "Normalization": 2,
    "BatchNormalization": 4,
    "LayerNormalization": 8,
    "GroupNormalization": 8,
    "UnitNormalization": 3,
}
# Layers that move or drop data but compute nothing worth counting.
_FREE = {
    "InputLayer",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Concatenate",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "Embedding",
    "Identity",
    "Masking",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "RandomShear",
    "RandomContrast",
    "RandomBrightness",
    "RandomCrop",
}
_ACTIVATION_FLOPS = {"relu": 1, "sigmoid": 4, "tanh": 4, "softmax": 3, "gelu": 8, "swish": 5}


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """The parameters and forward FLOPs per sample of one layer.

    Attributes:
        name: String. The layer's name (nested names joined with `/`).
        kind: String. The layer's class name.
        params: Integer. Its parameter count (trainable and not).
        flops: Integer, or `None` when its cost is unknown.
    """

    name: str
    kind: str
    params: int
    flops: int | None


def elements_per_sample(shape):
    """Elements per sample of a shape whose first dimension is the batch."""
    dims = list(shape)[1:]
    if any(d is None for d in dims):
        return None
    return math.prod(dims)


def layer_shapes(layer):
    """Returns `(input_shape, output_shape)`, either `None` where unknown.

    A built layer records its input shape in `get_build_config()`; a layer of
    a Sequential or functional model also has symbolic `input` and `output`.
    """
    try:
        return tuple(layer.input.shape), tuple(layer.output.shape)
    except (AttributeError, ValueError):  # Never called symbolically, or shared.
        pass
    config = layer.get_build_config() or {}
    if "input_shape" not in config:
        return None, None
    input_shape = tuple(config["input_shape"])
    try:
        output_shape = tuple(layer.compute_output_shape(input_shape))
    except Exception:  # Some layers cannot compute it from the shape alone.
        output_shape = None
    return input_shape, output_shape


def _activation_flops(layer, output_elements):
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "linear")
    return _ACTIVATION_FLOPS.get(name, 0) * output_elements


def _attention_flops(layer):
    shapes = (layer.get_build_config() or {}).get("shapes_dict", {})
    query, value = shapes.get("query_shape"), shapes.get("value_shape")
    if query is None or value is None or None in query[1:] or None in value[1:]:
        return None
    key = shapes.get("key_shape") or value
    heads, key_dim = layer.num_heads, layer.key_dim
    value_dim = layer.value_dim or key_dim
    q_len, k_len = math.prod(query[1:-1]), math.prod(key[1:-1])
    projections = (
        q_len * query[-1] * heads * key_dim
        + k_len * key[-1] * heads * key_dim
        + k_len * value[-1] * heads * value_dim
        + q_len * heads * value_dim * query[-1]
    )
    attention = q_len * k_len * heads * (key_dim + value_dim)
    return 2 * (projections + attention) + 3 * heads * q_len * k_len


def _recurrent_flops(layer, input_shape):
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[type(layer).__name__]
    steps, features, units = input_shape[1], input_shape[-1], layer.units
    if steps is None:
        return None
    per_step = 2 * gates * units * (features + units) + 10 * gates * units
    return steps * per_step


def layer_flops(layer):
    """Returns the forward FLOPs per sample of a built layer, or `None` if unknown."""
    kind = type(layer).__name__
    if kind in _FREE:
        return 0
    if kind == "MultiHeadAttention":
        return _attention_flops(layer)
    input_shape, output_shape = layer_shapes(layer)
    if input_shape is None:
        return None
    if kind in ("LSTM", "GRU", "SimpleRNN"):
        return _recurrent_flops(layer, input_shape)
    out = elements_per_sample(output_shape) if output_shape is not None else None
    if out is None:
        return None
    if kind in _ELEMENTWISE:
        return _ELEMENTWISE[kind] * out
    if kind in ("Dense", "EinsumDense"):
        kernel = layer.kernel.shape
        # Each output element takes one multiply-add per input feature.
        inputs_per_output = math.prod(kernel) // math.prod(kernel[-1:])
        bias = out if getattr(layer, "bias", None) is not None else 0
        return 2 * out * inputs_per_output + bias + _activation_flops(layer, out)
    if kind.startswith(("Conv", "DepthwiseConv", "SeparableConv")):
        return _conv_flops(layer, kind, input_shape, out)
    if "Pooling" in kind:
        pool = getattr(layer, "pool_size", None)
        if pool is None:  # global pooling: every input element once
            return elements_per_sample(input_shape)
        return out * math.prod(pool)
    return 0 if not layer.weights else None


def _conv_flops(layer, kind, input_shape, out):
    if kind.startswith("SeparableConv"):
        depth = layer.depthwise_kernel.shape
        channels_in = input_shape[-1] if layer.data_format == "channels_last" else input_shape[1]
        spatial = out // layer.filters
        depthwise = 2 * spatial * channels_in * depth[-1] * math.prod(depth[:-2])
        pointwise = 2 * out * channels_in * depth[-1]
        return depthwise + pointwise + _activation_flops(layer, out)
    if kind.startswith("DepthwiseConv"):
        kernel = layer.kernel.shape
        return 2 * out * math.prod(kernel[:-2]) + _activation_flops(layer, out)
    kernel = layer.kernel.shape
    if "Transpose" in kind:
        # Every input element scatters into kernel-size x filters outputs.
        inputs = elements_per_sample(input_shape)
        return 2 * inputs * math.prod(kernel[:-2]) * kernel[-2] + _activation_flops(layer, out)
    # kernel: (*window, in_channels / groups, filters); one MAC per window
    # element and input channel of its group, per output element.
    bias = out if getattr(layer, "bias", None) is not None else 0
    return 2 * out * math.prod(kernel[:-1]) + bias + _activation_flops(layer, out)


def leaf_layers(model, prefix=""):
    for layer in model.layers:
        name = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer, prefix=f"{name}/")
        else:
            yield name, layer


def model_costs(model):
    """Returns a `LayerCost` for each layer of a built model, nested models expanded."""
    costs = []
    for name, layer in leaf_layers(model):
        params = sum(math.prod(w.shape) for w in layer.weights)
        costs.append(LayerCost(name, type(layer).__name__, params, layer_flops(layer)))
    return costs
