"""`PruneLowMagnitude`: a layer whose kernel is used through a 0/1 mask.

The wrapped layer runs with its prunable weights replaced by `weight * mask`
(through `keras.StatelessScope`, so it works inside every backend's compiled
step, JAX's stateless one included). The masked entries therefore add
nothing to the outputs and get a zero gradient. The masks change only at the
schedule's steps, in one of two ways:

- inside the training step (no callback needed): each training call counts
  `pruning_step` up by one and, when the schedule prunes at that step,
  recomputes the masks with `keras.ops` under a `cond`, so plain `fit`,
  custom training loops and any backend's loop prune;
- from `UpdatePruningStep`, when it is among `fit`'s callbacks: it
  recomputes the masks on the host before the step (a linear-time partition,
  cheaper than the in-step sort on a CPU) and zeroes the stored weights and
  their optimizer slots, so masked weights are exactly zero at every step.
  While it drives, the in-step update stands aside.
"""

import keras
from keras import ops

from keras_fastrain.devices import host_array
from keras_fastrain.pruning import masks
from keras_fastrain.pruning.registry import PRUNABLE, is_wrappable, prunable_weights
from keras_fastrain.pruning.schedules import (
    ConstantSparsity,
    PruningSchedule,
    as_schedule,
    schedule_values,
)
from keras_fastrain.validation import check_choice, check_int

__all__ = ["PruneLowMagnitude"]


def _smallest_kept(weight, mask):
    """The smallest magnitude `mask` keeps (tfmot's threshold)."""
    magnitudes = ops.abs(weight)
    return ops.min(ops.where(mask > 0, magnitudes, ops.max(magnitudes)))


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
    layers where the model creates them. It prunes during training by
    itself, also in custom training loops and on every backend (each
    training call is one step of `pruning_step`); `UpdatePruningStep()`
    among `fit`'s callbacks (a `FastModel` adds it) drives the masks from
    the host instead and keeps masked weights exactly zero. A schedule that
    is not a `PruningSchedule` (a tfmot schedule, a function) needs that
    callback. `strip_pruning` then gives back the layer, its masked weights
    zeroed.

    As tfmot's wrapper, it has `pruning_step` (a variable: the last step
    seen, -1 before training) and `pruning_vars` (`(weight, mask,
    threshold)` for each pruned weight). A layer without weights to prune
    (Dropout, pooling, Flatten, BatchNormalization, ...) can be wrapped too,
    as with tfmot, and runs unchanged.

    Args:
        layer: The Keras layer to prune: Dense, Conv (1-3D, transposed,
            depthwise, separable), EinsumDense, Embedding, SimpleRNN, GRU,
            LSTM, one with a `get_prunable_weights()` method, or a layer
            without prunable weights (`NOT_PRUNED`), which stays as it is.
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
    model.fit(x, y, epochs=5)  # or with callbacks=[keras_fastrain.pruning.UpdatePruningStep()]
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
        if not isinstance(layer, keras.layers.Layer) or not is_wrappable(layer):
            names = ", ".join(cls.__name__ for cls, _ in PRUNABLE)
            raise ValueError(
                f"Cannot prune {layer!r}: pruning applies to {names}, to layers with a "
                "get_prunable_weights() method (keras_fastrain.pruning.PrunableLayer), "
                "and wraps layers without weights to prune (Dropout, pooling, Flatten, "
                "BatchNormalization, ...) unchanged."
            )
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        pruning_schedule = as_schedule(pruning_schedule)
        if pruning_schedule is None:
            pruning_schedule = ConstantSparsity(0.5, begin_step=0, frequency=100)
        self.pruning_schedule = pruning_schedule
        self.block_size = _check_pair("block_size", block_size)
        self.block_pooling_type = check_choice(
            "block_pooling_type", block_pooling_type, masks.POOLING_TYPES
        )
        self.sparsity_m_by_n = (
            None if sparsity_m_by_n is None else _check_pair("sparsity_m_by_n", sparsity_m_by_n)
        )
        self.pruned_weights = []
        self.masks = []
        self.thresholds = []
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
        self.thresholds = [
            self.add_weight(
                name=f"{weight.name}_threshold",
                shape=(),
                initializer="zeros",
                dtype=weight.dtype,
                trainable=False,
            )
            for weight in self.pruned_weights
        ]
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            initializer=keras.initializers.Constant(-1),
            dtype="int32",
            trainable=False,
        )

    @property
    def pruning_vars(self):
        """tfmot's `(weight, mask, threshold)` for each pruned weight."""
        return list(zip(self.pruned_weights, self.masks, self.thresholds, strict=True))

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
        # Decided when the step is traced: UpdatePruningStep retraces it when
        # it starts and ends driving the masks.
        if training and self.pruned_weights and not self.update_callback_attached:
            schedule = self.pruning_schedule
            if isinstance(schedule, PruningSchedule) and schedule.runs_in_step():
                self._prune_in_step()
            else:
                raise ValueError(
                    f"{self.name} trains with the schedule {schedule!r}, which cannot run "
                    "inside the training step (it is not a keras_fastrain PruningSchedule "
                    "with a sparsity_tensor method): add "
                    "keras_fastrain.pruning.UpdatePruningStep() to fit's callbacks "
                    "(FastModel(pruning=...) adds it itself)."
                )
        if not self.pruned_weights:  # a layer without weights to prune runs as it is
            return self.layer(inputs)
        pruned = {id(weight) for weight in self.pruned_weights}
        others = [(v, v.value) for v in self.layer.variables if id(v) not in pruned]
        mapping = others + [(w, w.value * m.value) for w, m in self.weights_and_masks()]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = self.layer(inputs)
        # What the layer updated itself (a seed generator's state, a stateful
        # RNN's states) goes back to its variables.
        for variable, before in others:
            after = scope.get_current_value(variable)
            if after is not None and after is not before:
                variable.assign(after)
        return outputs

    def _prune_in_step(self):
        """One training step: counts `pruning_step` up and, if the schedule
        prunes now, recomputes the masks from the masked weights (what is
        pruned stays pruned)."""
        step = self.pruning_step.value + 1
        self.pruning_step.assign(step)
        due, sparsity = self.pruning_schedule(step)
        for weight, mask, threshold in self.pruning_vars:
            masked = weight.value * mask.value

            def recompute(masked=masked):
                return self._mask_and_threshold(masked, sparsity)

            def keep(mask=mask, threshold=threshold):
                return mask.value, threshold.value

            new_mask, new_threshold = ops.cond(due, recompute, keep)
            mask.assign(new_mask)
            threshold.assign(new_threshold)

    def _mask_and_threshold(self, weight, sparsity):
        """The in-step mask (with `keras.ops` only) and its threshold."""
        if self.sparsity_m_by_n is not None:
            mask = masks.m_by_n_mask(weight, self.sparsity_m_by_n)
        elif self.block_size != (1, 1):
            mask = masks.block_mask(
                weight, sparsity, self.block_size, self.block_pooling_type, in_step=True
            )
        else:
            mask = masks.magnitude_mask_tensor(weight, sparsity)[0]
        return mask, _smallest_kept(weight, mask)

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
        self.mark_seen(step)
        return due

    def mark_seen(self, step):
        """Records that the schedule's steps up to `step` were acted on."""
        self._last_update_step = max(self._last_update_step, step)

    def prune_to(self, sparsity):
        """Sets the masks to `sparsity` from the current weights and zeroes
        the weights they remove."""
        for weight, mask, threshold in self.pruning_vars:
            # From the masked weights: what is pruned stays pruned.
            masked = weight.value * mask.value
            new_mask = self.mask_for(masked, sparsity)
            mask.assign(new_mask)
            threshold.assign(_smallest_kept(masked, new_mask))
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
