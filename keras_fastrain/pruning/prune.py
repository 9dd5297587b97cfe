"""`prune_low_magnitude` and `strip_pruning`: tfmot's two entry points, and
its helpers `prune_scope` and `collect_prunable_layers`."""

import warnings

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.pruning.callbacks import pruning_wrappers
from keras_fastrain.pruning.policy import PruningPolicy
from keras_fastrain.pruning.registry import NOT_PRUNED, is_prunable
from keras_fastrain.pruning.schedules import ConstantSparsity, PolynomialDecay, as_schedule
from keras_fastrain.pruning.wrapper import PruneLowMagnitude

__all__ = ["collect_prunable_layers", "prune_low_magnitude", "prune_scope", "strip_pruning"]


def _selector(layers):
    if layers is None:
        return lambda layer: True
    if callable(layers):
        return layers
    if isinstance(layers, (list, tuple, set)) and all(isinstance(n, str) for n in layers):
        names = set(layers)
        return lambda layer: layer.name in names
    raise TypeError(
        f"Invalid value for argument `layers`. Received: layers={layers!r}. Expected None "
        "(every prunable layer), a list of layer names, or a function layer -> bool."
    )


def prune_low_magnitude(
    to_prune,
    pruning_schedule=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    sparsity_m_by_n=None,
    pruning_policy=None,
    layers=None,
):
    """Prunes a layer, or a model's layers, by weight magnitude during training.

    tfmot's `prune_low_magnitude`, for Keras 3 on every backend. Train the
    result with `fit` (or any training loop): the wrappers prune inside the
    training step; `UpdatePruningStep()` among `fit`'s callbacks (which
    `FastModel(pruning=...)` adds) drives them from the host instead and
    keeps masked weights exactly zero. Then `strip_pruning`.

    In a model, every prunable layer is wrapped, also inside nested
    functional or Sequential models (as tfmot recurses); layers without
    weights to prune (Dropout, pooling, ...) stay as they are; any other
    layer (one Keras or this package does not know how to prune) stays too,
    and a warning names it.

    Args:
        to_prune: A prunable layer (Dense, Conv, DepthwiseConv2D,
            SeparableConv, EinsumDense, Embedding, SimpleRNN, GRU, LSTM, or
            one with `get_prunable_weights()`), a list of such layers, or a
            functional or Sequential model, built or not (a model without
            an `Input` builds in its first step). A subclassed model cannot
            be rebuilt from its graph: wrap its layers where it creates
            them instead.
        pruning_schedule: A schedule: `ConstantSparsity`, `PolynomialDecay`,
            or any object called the same way (a tfmot schedule works).
            Defaults to `ConstantSparsity(0.5, begin_step=0, frequency=100)`.
        block_size: Pair. Prune blocks of this many weights together (2-D
            weights only). Defaults to `(1, 1)`: weight by weight.
        block_pooling_type: `"AVG"` or `"MAX"`: how a block's magnitudes
            are pooled. Defaults to `"AVG"`.
        sparsity_m_by_n: `None` or a pair `(m, n)`: `m` zeros in every `n`
            consecutive input-channel weights (e.g. `(2, 4)`), instead of
            the schedule's sparsity. Defaults to `None`.
        pruning_policy: `None` or a `PruningPolicy`: it checks the model
            first (`ensure_model_supports_pruning`) and says which layers
            may be pruned (`allow_pruning`). Defaults to `None`.
        layers: For a model, which layers to prune: `None` (every prunable
            one), a list of layer names, or a function `layer -> bool`.
            Not a tfmot argument.

    Returns:
        A `PruneLowMagnitude` layer (a list of them for a list), or a new
        model of the same kind whose chosen layers are wrapped. The new
        model shares the given model's layers and weights (it is not a
        copy).

    Raises:
        ValueError: for a layer that cannot be pruned, a model with nothing
            to prune, or a subclassed model.

    Example:

    ```python
    model = keras_fastrain.pruning.prune_low_magnitude(
        model, pruning_schedule=PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)
    )
    model.compile(...)
    model.fit(x, y, callbacks=[keras_fastrain.pruning.UpdatePruningStep()])
    model = keras_fastrain.pruning.strip_pruning(model)
    ```
    """
    options = {
        "pruning_schedule": as_schedule(pruning_schedule),
        "block_size": block_size,
        "block_pooling_type": block_pooling_type,
        "sparsity_m_by_n": sparsity_m_by_n,
    }
    if pruning_policy is not None and not isinstance(pruning_policy, PruningPolicy):
        raise TypeError(
            "Invalid value for argument `pruning_policy`. Received: "
            f"pruning_policy={pruning_policy!r}. Expected None or a PruningPolicy."
        )
    if isinstance(to_prune, (list, tuple)):
        if layers is not None or pruning_policy is not None:
            raise ValueError(
                f"Received layers={layers!r} and pruning_policy={pruning_policy!r} with a "
                "list of layers: both choose among a model's layers; pass a model, or "
                "only the layers to prune."
            )
        return [prune_low_magnitude(layer, **options) for layer in to_prune]
    if not isinstance(to_prune, keras.Model):
        if not isinstance(to_prune, keras.layers.Layer):
            raise TypeError(
                f"Invalid value for argument `to_prune`. Received: to_prune={to_prune!r}. "
                "Expected a Keras layer, a list of layers, or a functional or Sequential model."
            )
        if layers is not None:
            raise ValueError(
                f"Received layers={layers!r} with the layer {to_prune.name!r}: `layers` "
                "chooses among a model's layers."
            )
        return PruneLowMagnitude(to_prune, **options)
    if pruning_policy is not None:
        pruning_policy.ensure_model_supports_pruning(to_prune)
    chosen = _selector(layers)
    allowed = pruning_policy.allow_pruning if pruning_policy is not None else lambda layer: True
    wrapped, unknown = [], []

    def wrap(layer):
        if isinstance(layer, (keras.Sequential, _keras_internals.Functional)):
            return _rebuild(layer, wrap)  # a nested model: its layers too, as tfmot
        if isinstance(layer, PruneLowMagnitude) or not (chosen(layer) and allowed(layer)):
            return layer
        if not is_prunable(layer):
            if not isinstance(layer, NOT_PRUNED) and layer.weights:
                unknown.append(f"{layer.name} ({type(layer).__name__})")
            return layer
        wrapped.append(layer.name)
        return PruneLowMagnitude(layer, **options)

    pruned = _rebuild(to_prune, wrap)
    if not wrapped:
        raise ValueError(
            f"Nothing to prune in {to_prune.name!r}: no layer is both prunable "
            "(Dense, Conv, Embedding, ...) and chosen by `layers`."
        )
    if unknown:
        warnings.warn(
            f"prune_low_magnitude left {len(unknown)} layer(s) with weights unpruned, as it "
            f"does not know which of their weights to prune: {', '.join(unknown)}. Give "
            "such a layer a get_prunable_weights() method to prune it.",
            stacklevel=2,
        )
    return pruned


def prune_scope():
    """tfmot's scope for loading a pruned model saved elsewhere.

    A `.keras` file saved by keras-fastrain loads without it (the wrapper is
    registered); this scope names `PruneLowMagnitude` and the schedules for
    code written for tfmot, and for files that refer to them by bare name.

    Returns:
        A `keras.saving.custom_object_scope`.

    Example:

    ```python
    with keras_fastrain.pruning.prune_scope():
        model = keras.models.load_model("pruned.keras")
    ```
    """
    return keras.saving.custom_object_scope(
        {
            "PruneLowMagnitude": PruneLowMagnitude,
            "ConstantSparsity": ConstantSparsity,
            "PolynomialDecay": PolynomialDecay,
        }
    )


def collect_prunable_layers(model):
    """tfmot's helper: every `PruneLowMagnitude` layer in `model`, nested
    models included.

    Args:
        model: A Keras model.

    Returns:
        A list of `PruneLowMagnitude` layers.

    Example:

    ```python
    for layer in keras_fastrain.pruning.collect_prunable_layers(model):
        print(layer.name, layer.sparsity())
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Invalid value for argument `model`. Received: model={model!r}. "
            "Expected a keras.Model."
        )
    return pruning_wrappers(model)


def strip_pruning(model):
    """Returns `model` without pruning wrappers: a plain Keras model.

    Each `PruneLowMagnitude` is replaced by its layer, whose weights are
    masked (so the zeros stay), and the mask variables are gone. The result
    predicts the same, saves and loads as a plain Keras model, and shares
    its layers with `model`. Compile it again to train or evaluate.

    Args:
        model: A model from `prune_low_magnitude`, or a `PruneLowMagnitude`.

    Returns:
        A new functional or Sequential model without wrappers, or, for a
        `PruneLowMagnitude`, the layer it wraps.

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[keras_fastrain.pruning.UpdatePruningStep()])
    small = keras_fastrain.pruning.strip_pruning(model)
    small.save("pruned.keras")
    ```
    """
    if isinstance(model, PruneLowMagnitude):
        model.apply_masks()
        return model.layer
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Invalid value for argument `model`. Received: model={model!r}. "
            "Expected a model from prune_low_magnitude, or a PruneLowMagnitude layer."
        )

    def unwrap(layer):
        if isinstance(layer, PruneLowMagnitude):
            layer.apply_masks()
            return layer.layer
        if isinstance(layer, (keras.Sequential, _keras_internals.Functional)):
            return _rebuild(layer, unwrap)
        return layer

    return _rebuild(model, unwrap)


def _rebuild(model, replace):
    """The same graph with each layer replaced by `replace(layer)`."""
    if isinstance(model, keras.Sequential):
        # A Sequential without an Input has no inputs until its first call.
        first = model.inputs[0] if model.built and model.inputs else None
        inputs = [] if first is None else [keras.Input(batch_shape=first.shape, dtype=first.dtype)]
        layers = inputs + [replace(layer) for layer in model.layers]
        return keras.Sequential(layers, name=model.name)
    if not isinstance(model, _keras_internals.Functional):
        raise ValueError(
            f"Cannot rebuild the subclassed model {model.name!r} from a graph: wrap its "
            "layers with prune_low_magnitude where the model creates them."
        )
    return keras.models.clone_model(
        model, clone_function=replace, call_function=None, recursive=False
    )
