"""`PruningPolicy`: tfmot's hook for which layers of a model may be pruned."""

__all__ = ["PruningPolicy"]


class PruningPolicy:
    """Decides which layers of a model `prune_low_magnitude` may prune.

    tfmot's interface: subclass it and implement `allow_pruning(layer)`
    (and, to refuse a whole model, `ensure_model_supports_pruning(model)`),
    then pass an instance as `prune_low_magnitude(..., pruning_policy=)`.
    Layers it disallows stay unwrapped.

    Example:

    ```python
    class DenseOnly(keras_fastrain.pruning.PruningPolicy):
        def allow_pruning(self, layer):
            return isinstance(layer, keras.layers.Dense)


    pruned = keras_fastrain.pruning.prune_low_magnitude(model, pruning_policy=DenseOnly())
    ```
    """

    def allow_pruning(self, layer):
        """Whether `layer` may be pruned. Defaults to `True`."""
        del layer
        return True

    def ensure_model_supports_pruning(self, model):
        """Raises `ValueError` if `model` cannot be pruned under this policy.
        Defaults to accepting every model."""
        del model
