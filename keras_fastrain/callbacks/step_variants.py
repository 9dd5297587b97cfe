"""`StepVariants`: other compiled training steps, swapped in between calls.

Some methods change what a training step does for part of a fit: train on
the hardest share of each batch (`SelectiveBackprop`), on smaller images
(`ProgressiveResizing`), with the first layers frozen (`LayerFreezing`).
Each variant is compiled once, next to Keras's own train function, the
first time it is used, and the callback picks before each compiled call
which one runs. Keras's `train_step` is looked up when a step is traced
(and by PyTorch's eager step at every call), so the model's `train_step` is
swapped with the function. Keras calls no callback when a call fails, so a
failing variant puts Keras's function back itself, and a later fit does not
reuse it.

Only one such callback works on a model at a time: two would each take the
other's variant for Keras's own step. The second one to swap a step finds
the function it left replaced, and says so.
"""

import keras

__all__ = ["StepVariants", "fit_progress", "innermost_model", "is_jax_nnx"]


class StepVariants:
    """Keras's compiled train function of a model and variants of it.

    Args:
        model: The model being fit.
        owner: The callback that swaps the variants in (named in the error
            when another one swaps the model's step too).

    Example:

    ```python
    variants = StepVariants(model, callback)  # in on_train_begin
    variants.use(16, smaller_step)  # the next call trains on 16 x 16 images
    variants.use(None)  # Keras's own step
    variants.close()  # in on_train_end
    ```
    """

    def __init__(self, model, owner):
        self.model, self.owner = model, owner
        self._own_step = vars(model).get("train_step")  # a step the user set, kept
        self._keras_function = model.train_function
        self._variants = {}  # key -> (step, compiled function)
        self._last = None  # the function this object last set
        self.key = None

    @property
    def compiled(self):
        """The number of variants compiled so far."""
        return len(self._variants)

    def use(self, key, step=None):
        """Makes the next compiled call run variant `key`.

        Args:
            key: Hashable, or `None` for Keras's own function.
            step: The `train_step` of a new variant (the backend's
                signature), compiled the first time `key` is used; `None`:
                Keras's own step, compiled again with the model as it is
                then (its trainable layers, say).

        Raises:
            ValueError: when something else replaced the function this
                object set last (another callback that swaps steps).
        """
        current = self.model.train_function
        if self._last is None:  # the function as the fit's callbacks left it
            self._keras_function = current
        elif current is not self._last:
            other = getattr(current, "owner", None) or getattr(self._keras_function, "owner", None)
            raise ValueError(
                f"{type(self.owner).__name__} swaps the model's compiled training step "
                f"between calls, and {_name(other)} replaced it too: the two cannot share "
                "the step. Use one of them per fit."
            )
        if key is not None and key not in self._variants:
            self._variants[key] = (step, self._compile(step))
        self.key = key
        step, function = self._variants.get(key, (None, self._keras_function))
        self.model.train_function = self._last = function
        self._set_step(step)

    def close(self):
        """Keras's own function and step again, for later fits."""
        self.model.train_function = self._keras_function
        self._set_step(None)
        self._variants.clear()
        self._last = None

    def _compile(self, step):
        model = self.model
        self._set_step(step)
        try:
            model.make_train_function(force=True)
            compiled = model.train_function
        finally:
            model.train_function = self._keras_function

        def guarded(*args):
            try:
                return compiled(*args)
            except BaseException:
                self.close()
                raise

        guarded.owner = self.owner
        return guarded

    def _set_step(self, step):
        model = self.model
        if step is not None:
            model.train_step = step
        elif self._own_step is not None:
            model.train_step = self._own_step
        elif "train_step" in vars(model):
            del model.train_step  # Keras's own step again


def _name(owner):
    return "something else" if owner is None else type(owner).__name__


def fit_progress(params, epoch, batch):
    """The share of a fit done before step `batch` of `epoch` (0-based),
    from a callback's `params` (`epochs`, `steps`)."""
    epochs = max(1, int(params.get("epochs") or 1))
    steps = params.get("steps") or 0
    within = batch / steps if steps else 0.0
    return (epoch + within) / epochs


def is_jax_nnx():
    """Whether Keras's JAX trainer runs with NNX, which does not look up a
    model's own `train_step`."""
    return keras.backend.backend() == "jax" and keras.config.is_nnx_enabled()


def innermost_model(model):
    """The model a model wraps as its only layer (`FastModel(keras_model)`
    does), all the way down; `model` itself when it wraps none."""
    layers = getattr(model, "layers", None) or []
    while len(layers) == 1 and isinstance(layers[0], keras.Model):
        model = layers[0]
        layers = getattr(model, "layers", None) or []
    return model
