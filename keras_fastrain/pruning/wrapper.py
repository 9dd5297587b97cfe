"""`PruneLowMagnitude`: a layer whose kernel is used through a 0/1 mask.

The wrapped layer runs with its prunable weights replaced by `weight * mask`
(through `keras.StatelessScope`, so it works inside every backend's compiled
step, JAX's stateless one included). The masked entries therefore add
nothing to the outputs and get a zero gradient. The masks themselves change
only at the schedule's steps, from `UpdatePruningStep`, which also zeroes the
stored weights they mask.
"""

import keras

from keras_fastrain.devices import host_array
from keras_fastrain.pruning import masks
from keras_fastrain.pruning.schedules import ConstantSparsity, schedule_values
from keras_fastrain.validation import check_choice, check_int

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
)


def is_prunable(layer):
    """Whether `layer` has weights `PruneLowMagnitude` knows how to prune:
    a Keras layer listed in `PRUNABLE`, or one with tfmot's
    `get_prunable_weights()` method."""
    return hasattr(layer, "get_prunable_weights") or any(
        isinstance(layer, cls) for cls, _ in PRUNABLE
    )


def prunable_weights(layer):
    """The weights of a built `layer` that pruning masks."""
    if hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    for cls, names in PRUNABLE:
        if isinstance(layer, cls):
            return [getattr(layer, name) for name in names]
    return []


def _check_pair(name, value):
    pair = tuple(value) if isinstance(value, (list, tuple)) else None
    if pair is None or len(pair) != 2:
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
            "Expected a pair of integers."
        )
    return tuple(check_int(name, v, minimum=1) for v in pair)


@keras.saving.register_keras_serializable(package="keras_fastrain")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Prunes a layer's weights by magnitude (tfmot's wrapper of that name).

    Usually made by `prune_low_magnitude`; in a subclassed model, wrap the
    layers where the model creates them. Train with `UpdatePruningStep()`
    among `fit`'s callbacks (a `FastModel` adds it); `strip_pruning` then
    gives back the layer, its masked weights zeroed.

    Args:
        layer: The Keras layer to prune: Dense, Conv (1-3D, transposed,
            depthwise, separable), EinsumDense, Embedding, or one with a
            `get_prunable_weights()` method.
        pruning_schedule: A schedule, called as `step -> (should_prune,
            sparsity)`: `ConstantSparsity`, `PolynomialDecay`, a tfmot
            schedule, or the `get_config()` dict of `ConstantSparsity` or
            `PolynomialDecay`. Defaults to
            `ConstantSparsity(0.5, begin_step=0, frequency=100)`.
        block_size: Pair of integers. Prune blocks of this shape together
            (2-D weights only). Defaults to `(1, 1)`: weight by weight.
        block_pooling_type: `"AVG"` or `"MAX"`: how a block's magnitudes
            are pooled. Defaults to `"AVG"`.
        sparsity_m_by_n: `None` or a pair `(m, n)`: `m` zeros in every `n`
            consecutive input-channel weights, instead of the schedule's
            sparsity (Dense and Conv2D kernels). Defaults to `None`.
        **kwargs: `keras.layers.Wrapper`'s arguments. `name` defaults to
            `"prune_low_magnitude_<layer name>"`.

    Example:

    ```python
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras_fastrain.pruning.PruneLowMagnitude(
                keras.layers.Dense(64, activation="relu"),
                pruning_schedule=keras_fastrain.pruning.ConstantSparsity(0.75, begin_step=100),
            )
            self.classify = keras.layers.Dense(10, activation="softmax")

        def call(self, inputs):
            return self.classify(self.hidden(inputs))


    model = Net()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, callbacks=[keras_fastrain.pruning.UpdatePruningStep()])
    ```
    """

    def __init__(
        self,
        layer,
        pruning_schedule=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        sparsity_m_by_n=None,
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer) or not is_prunable(layer):
            names = ", ".join(cls.__name__ for cls, _ in PRUNABLE)
            raise ValueError(
                f"Cannot prune {layer!r}: pruning applies to {names}, and to layers "
                "with a get_prunable_weights() method."
            )
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        if pruning_schedule is None:
            pruning_schedule = ConstantSparsity(0.5, begin_step=0, frequency=100)
        if isinstance(pruning_schedule, dict):
            from keras_fastrain.pruning import schedules

            pruning_schedule = getattr(schedules, pruning_schedule["class_name"]).from_config(
                pruning_schedule["config"]
            )
        if not callable(pruning_schedule):
            raise TypeError(
                "Invalid value for argument `pruning_schedule`. Received: "
                f"pruning_schedule={pruning_schedule!r}. Expected a schedule: "
                "step -> (should_prune, sparsity)."
            )
        self.pruning_schedule = pruning_schedule
        self.block_size = _check_pair("block_size", block_size)
        self.block_pooling_type = check_choice(
            "block_pooling_type", block_pooling_type, masks.POOLING_TYPES
        )
        self.sparsity_m_by_n = (
            None if sparsity_m_by_n is None else _check_pair("sparsity_m_by_n", sparsity_m_by_n)
        )
        self.masks = []
        self._last_update_step = -1
        self.update_callback_attached = False

    def build(self, input_shape=None):
        super().build(input_shape)
        self.pruned_weights = prunable_weights(self.layer)
        for weight in self.pruned_weights:
            self._check_weight(weight)
        self.masks = [
            self.add_weight(
                name=f"{weight.name}_mask",
                shape=weight.shape,
                initializer="ones",
                dtype=weight.dtype,
                trainable=False,
            )
            for weight in self.pruned_weights
        ]

    def weights_and_masks(self):
        """(pruned weight, its mask) pairs."""
        return list(zip(self.pruned_weights, self.masks, strict=True))

    def _check_weight(self, weight):
        if self.sparsity_m_by_n is not None:
            masks.check_m_by_n(weight.shape, self.sparsity_m_by_n)
        if self.block_size != (1, 1) and len(weight.shape) != 2:
            raise ValueError(
                f"block_size={self.block_size} needs 2-D weights; {self.layer.name}'s "
                f"{weight.name} has shape {tuple(weight.shape)}."
            )

    def call(self, inputs, training=None):
        if training and not self.update_callback_attached:
            raise ValueError(
                f"{self.name} trains without its masks being updated: add "
                "keras_fastrain.pruning.UpdatePruningStep() to fit's callbacks "
                "(FastModel(pruning=...) adds it itself)."
            )
        pruned = {id(weight) for weight in self.pruned_weights}
        mapping = [(v, v.value) for v in self.layer.variables if id(v) not in pruned]
        mapping += [(w, w.value * m.value) for w, m in self.weights_and_masks()]
        with keras.StatelessScope(state_mapping=mapping):
            return self.layer(inputs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def mask_for(self, weight, sparsity):
        """The mask the schedule asks for now, from `weight`'s values."""
        if self.sparsity_m_by_n is not None:
            return masks.m_by_n_mask(weight, self.sparsity_m_by_n)
        if self.block_size != (1, 1):
            return masks.block_mask(weight, sparsity, self.block_size, self.block_pooling_type)
        return masks.magnitude_mask(weight, sparsity)

    def due_sparsity(self, step):
        """The sparsity the schedule asks for at a step in (last look,
        `step`], or `None` if it prunes at none of them; marks them seen.

        Checking the range rather than `step` alone keeps the schedule when
        several steps run per compiled call (`steps_per_execution`), and a
        layer first built inside the first step (TensorFlow builds a
        subclassed model there) catches up at the next batch.
        """
        if not self.built:
            return None
        due = None
        for candidate in range(max(self._last_update_step + 1, step - 10_000), step + 1):
            should_prune, sparsity = schedule_values(self.pruning_schedule, candidate)
            if should_prune:
                due = sparsity
        self._last_update_step = max(self._last_update_step, step)
        return due

    def prune_to(self, sparsity):
        """Sets the masks to `sparsity` from the current weights and zeroes
        the weights they remove."""
        for weight, mask in self.weights_and_masks():
            mask.assign(self.mask_for(weight.value, sparsity))
        self.apply_masks()

    def update_masks(self, step):
        """Prunes to the schedule's sparsity if it prunes at a step in
        (last look, `step`]; returns whether it did."""
        sparsity = self.due_sparsity(step)
        if sparsity is None:
            return False
        self.prune_to(sparsity)
        return True

    def apply_masks(self):
        """Zeroes the stored weights that the masks remove."""
        if not self.built:
            return
        for weight, mask in self.weights_and_masks():
            weight.assign(weight.value * mask.value)

    def sparsity(self):
        """Per pruned weight: the fraction of its mask that is zero."""
        if not self.built:
            return {}
        return {
            weight.path: 1.0 - float(host_array(mask).mean())
            for weight, mask in self.weights_and_masks()
        }

    def get_config(self):
        schedule = self.pruning_schedule
        if not hasattr(schedule, "get_config"):
            raise TypeError(f"{self.name}'s pruning_schedule {schedule!r} has no get_config().")
        config = schedule.get_config()
        if "class_name" not in config:  # a tfmot schedule: {arguments}
            config = {"class_name": type(schedule).__name__, "config": config}
        return {
            **super().get_config(),
            "pruning_schedule": config,
            "block_size": self.block_size,
            "block_pooling_type": self.block_pooling_type,
            "sparsity_m_by_n": self.sparsity_m_by_n,
        }
