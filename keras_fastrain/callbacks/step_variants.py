"""`StepVariants`: other compiled training steps, swapped in between calls.

Some methods change what a training step does for part of a fit: train on
the hardest share of each batch (`SelectiveBackprop`), on smaller images
(`ProgressiveResizing`), with the first layers frozen (`LayerFreezing`).
Each variant is compiled once, next to Keras's own train function, the
first time it is used, and the callback picks before each compiled call
which one runs. Keras binds the model's `train_step` when it makes a train
function (PyTorch's eager step looks it up at every call), so the model's
`train_step` is swapped with the function.

Keras calls no callback when a fit fails, so what a variant changed could
outlive the fit: a failing variant call puts Keras's function back itself,
and the next fit's `StepVariants` puts back whatever an interrupted one
left (its function, its step, and the owner's own changes, such as frozen
layers); `FastModel.fit` puts it back as soon as a fit fails
(`close_left_open`).
Only one such callback works on a model in a fit: a second one is
refused when the fit starts.
"""

import keras

from keras_fastrain import _keras_internals

__all__ = [
    "FitProgress",
    "StepVariants",
    "close_left_open",
    "innermost_model",
    "refuse_jax_nnx",
]

# The model attribute holding the `StepVariants` a fit has open.
_OPEN = "_fastrain_open_step_variants"


class StepVariants:
    """Keras's compiled train function of a model and variants of it.

    Args:
        model: The model being fit.
        owner: The callback that swaps the variants in (in `on_train_begin`).
        on_close: A function of no arguments, or `None`: what else the owner
            puts back when the variants close (at the end of the fit, after
            a failed variant call, or at the next fit after an interrupted
            one).

    Raises:
        ValueError: when another callback of the same fit swaps the step.

    Example:

    ```python
    variants = StepVariants(model, callback)  # in on_train_begin
    variants.use(16, smaller_step)  # the next call trains on 16 x 16 images
    variants.use(None)  # Keras's own step
    variants.close()  # in on_train_end
    ```
    """

    def __init__(self, model, owner, on_close=None):
        open_ = getattr(model, _OPEN, None)
        if open_ is not None:
            if open_.owner is not owner and getattr(open_.owner, "params", None) is getattr(
                owner, "params", ()
            ):  # callbacks of one fit share its params
                raise ValueError(
                    f"{type(owner).__name__} and {type(open_.owner).__name__} both swap the "
                    "model's compiled training step during fit, and cannot share it: use one "
                    "of them per fit."
                )
            open_.close()  # left open by a fit that did not end
        self.model, self.owner, self._on_close = model, owner, on_close
        self._own_step = vars(model).get("train_step")  # a step the user set, kept
        # Keras's function as the fit's other callbacks left it: taken at
        # the first `use`, after every `on_train_begin`.
        self._keras_function = None
        self._variants = {}  # key -> (step, compiled function)
        self.key = None
        setattr(model, _OPEN, self)

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
        """
        if self._keras_function is None:
            self._keras_function = self.model.train_function
        if key is not None and key not in self._variants:
            self._variants[key] = (step, self._compile(step))
        self.key = key
        step, function = self._variants.get(key, (None, self._keras_function))
        self.model.train_function = function
        self._set_step(step)

    def close(self):
        """Keras's own function and step again, for later fits (unless
        something else has replaced the function since), and the owner's
        `on_close`."""
        model = self.model
        if getattr(model, _OPEN, None) is not self:
            return
        delattr(model, _OPEN)
        try:
            ours = [function for _, function in self._variants.values()]
            steps = [step for step, _ in self._variants.values() if step is not None]
            current = model.train_function
            stale_step = any(vars(model).get("train_step") is step for step in steps)
            self._set_step(None)
            if self._keras_function is not None and (
                current is self._keras_function or any(current is f for f in ours)
            ):
                model.train_function = self._keras_function
            elif stale_step and current is not None:
                # Made (after a recompile, say) around a variant step left
                # behind: made again around Keras's own.
                model.make_train_function(force=True)
            self._variants.clear()
        finally:
            if self._on_close is not None:
                self._on_close()

    def _compile(self, step):
        model = self.model
        # Keras's JAX trainer reads the variables' values (their sharding)
        # when it makes a function, and holds them itself mid-epoch.
        _keras_internals.sync_jax_state(model)
        self._set_step(step)
        try:
            model.make_train_function(force=True)
            compiled = model.train_function
        finally:
            model.train_function = self._keras_function

        def guarded(*args):
            try:
                return compiled(*args)
            except StopIteration:  # the end of data of unknown length
                raise
            except BaseException as error:
                if type(error).__name__ != "OutOfRangeError":  # TensorFlow's end of data
                    self.close()
                raise

        return guarded

    def _set_step(self, step):
        model = self.model
        if step is not None:
            model.train_step = step
        elif self._own_step is not None:
            model.train_step = self._own_step
        elif "train_step" in vars(model):
            del model.train_step  # Keras's own step again


def close_left_open(model):
    """Puts back what a fit that did not end left of its step variants:
    Keras's train function and step, and the owner's changes (frozen
    layers). Does nothing when none is open.

    Args:
        model: A `keras.Model`.
    """
    open_ = getattr(model, _OPEN, None)
    if open_ is not None:
        open_.close()


class FitProgress:
    """The share of a fit done before each step, from a callback's `params`.

    With data of unknown length (`params["steps"]` is `None`), the steps of
    the first epoch are counted and used for the later ones; the first epoch
    counts as progress `epoch / epochs`.

    Example:

    ```python
    progress = FitProgress()
    progress.epoch_begin(self.params, epoch)  # in on_epoch_begin
    share = progress.at(batch)  # in on_train_batch_begin
    ```
    """

    def __init__(self):
        self.epoch, self.epochs, self.steps, self._seen = 0, 1, None, 0

    def epoch_begin(self, params, epoch):
        self.epochs = max(1, int(params.get("epochs") or 1))
        self.steps = params.get("steps") or self.steps or (self._seen or None)
        self.epoch, self._seen = epoch, 0

    def at(self, batch):
        self._seen = max(self._seen, batch + 1)
        within = min(batch / self.steps, 1.0) if self.steps else 0.0
        return (self.epoch + within) / self.epochs


def innermost_model(model):
    """The model a model wraps (`FastModel(keras_model)` does, next to
    weightless layers such as its augmentation), all the way down; `model`
    itself when it wraps none."""
    while True:
        layers = getattr(model, "layers", None) or []
        models = [layer for layer in layers if isinstance(layer, keras.Model)]
        others = [layer for layer in layers if not isinstance(layer, keras.Model)]
        if len(models) != 1 or any(layer.trainable_weights for layer in others):
            return model
        model = models[0]


def refuse_jax_nnx(owner):
    """Raises when Keras's JAX trainer runs with NNX, which calls the
    class's `train_step` and never a step set on the model, so `owner`
    would silently do nothing."""
    if keras.backend.backend() == "jax" and keras.config.is_nnx_enabled():
        name = type(owner).__name__
        raise ValueError(
            f"{name} replaces the model's train_step, which Keras's JAX trainer does not "
            f"look up with NNX enabled: disable NNX, or remove {name}."
        )
