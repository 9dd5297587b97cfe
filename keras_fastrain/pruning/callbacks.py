"""The callbacks that drive pruning during `fit` (tfmot's names)."""

import os

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.devices import host_array
from keras_fastrain.pruning.wrapper import PruneLowMagnitude

__all__ = ["is_entrywise", "pruning_wrappers", "PruningSummaries", "UpdatePruningStep"]


def pruning_wrappers(model):
    """Every `PruneLowMagnitude` layer in `model`."""
    return [
        layer
        for layer in _keras_internals.all_layers(model)
        if isinstance(layer, PruneLowMagnitude)
    ]


# Optimizers whose update of an entry depends only on that entry's gradient
# and slots: once a pruned entry's slots are zero its update is exactly zero
# (its gradient is, the forward pass uses weight * mask). Others (Muon
# orthogonalizes whole matrices; unknown optimizers) get the weights re-zeroed
# before every step instead.
ENTRYWISE_OPTIMIZERS = (
    keras.optimizers.SGD,
    keras.optimizers.Adam,
    keras.optimizers.AdamW,
    keras.optimizers.Adamax,
    keras.optimizers.Nadam,
    keras.optimizers.RMSprop,
    keras.optimizers.Adagrad,
    keras.optimizers.Adadelta,
    keras.optimizers.Ftrl,
    keras.optimizers.Lion,
    keras.optimizers.Lamb,
    keras.optimizers.Adafactor,
)


def is_entrywise(optimizer):
    """Whether `optimizer` (or the one a `LossScaleOptimizer` wraps) is one of
    `ENTRYWISE_OPTIMIZERS` itself, not a subclass that may update otherwise."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    # Horovod's Distributed<Name> averages the gradients, then updates as
    # the optimizer class it wraps (`optimizer_class`) does.
    kind = getattr(type(optimizer), "optimizer_class", None) or type(optimizer)
    return kind in ENTRYWISE_OPTIMIZERS


class UpdatePruningStep(keras.callbacks.Callback):
    """Updates the masks at the schedule's steps and keeps pruned weights at 0.

    Before each batch it lets every `PruneLowMagnitude` recompute its masks
    if the schedule prunes at a step since it last looked (as tfmot: before
    the step runs, from the weights the previous step left). A mask update
    sets the weights it removes to exactly zero, and their optimizer slots
    (momentum, moving averages) too: their gradient is zero, so an
    entry-wise optimizer (`ENTRYWISE_OPTIMIZERS`: SGD, Adam, AdamW, RMSprop,
    Lion, ...) keeps them at exactly zero with no further work. With any
    other optimizer the masked weights are set back to zero before every
    step. Either way they are zero at every step's start and when `fit`
    returns.

    The step count is read once per epoch and kept on the host, and the
    callback has no batch-end hook, so Keras's asynchronous dispatch stays on
    and a batch costs no device round trip. With `steps_per_execution` above
    1 Keras calls the hook once per compiled call, so a mask update may come
    up to that many steps late.

    Without this callback the wrappers prune inside the training step by
    themselves; with it, it drives the masks and they stand aside. tfmot's
    custom-loop idiom works as written: `set_model`, `on_train_begin()`,
    `on_train_batch_begin(batch=-1)` before each step (a negative batch:
    the callback counts the steps itself) and `on_epoch_end(batch=-1)`.

    Raises:
        ValueError: at the start of `fit`, if the model has nothing to prune.

    Example:

    ```python
    model = keras_fastrain.pruning.prune_low_magnitude(model)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, callbacks=[keras_fastrain.pruning.UpdatePruningStep()])
    ```
    """

    def __init__(self):
        super().__init__()
        self._wrappers = []
        self._epoch_start_step = 0
        self._next_step = 0
        self._rezero_every_step = False

    def on_train_begin(self, logs=None):
        self._wrappers = pruning_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                f"UpdatePruningStep: model {self.model.name!r} has no layer to prune; "
                "make it with keras_fastrain.pruning.prune_low_magnitude."
            )
        self._hand_over(attached=True)
        self._rezero_every_step = not is_entrywise(self.model.optimizer)
        self._epoch_start_step = self._next_step = self._iterations()

    def _hand_over(self, attached):
        """Tells the wrappers whether this callback drives their masks; the
        training step, which leaves out the in-step update while it does,
        is traced anew when that changes."""
        changed = False
        for wrapper in self._wrappers:
            changed |= wrapper.update_callback_attached != attached
            wrapper.update_callback_attached = attached
            if attached and wrapper.built:  # the steps it pruned itself are seen
                wrapper.mark_seen(int(host_array(wrapper.pruning_step)))
        if changed and getattr(self.model, "train_function", None) is not None:
            self.model.make_train_function(force=True)

    def _iterations(self):
        optimizer = getattr(self.model, "optimizer", None)
        return int(host_array(optimizer.iterations)) if optimizer is not None else 0

    def on_epoch_begin(self, epoch, logs=None):
        # Keras's JAX fit puts the state back into the variables between
        # epochs, so this read is current there too.
        self._epoch_start_step = self._iterations()

    def _sync(self):
        _keras_internals.sync_jax_state(self.model)

    def on_train_batch_begin(self, batch=-1, logs=None):
        # fit passes the batch's index; tfmot's custom loops pass -1.
        step = self._epoch_start_step + batch if batch >= 0 else self._next_step
        self._next_step = step + 1
        self._prune_due(step, rezero=self._rezero_every_step)

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        # Catches up a step the batch hooks could not act on: a layer that
        # TensorFlow builds inside the first compiled call is unbuilt at its
        # batch's start. (`batch`: tfmot's custom loops call on_epoch_end(batch=-1).)
        del batch
        self._prune_due(self._iterations())

    def _prune_due(self, step, rezero=False):
        due = [(w, w.due_sparsity(step)) for w in self._wrappers]
        due = [(w, sparsity) for w, sparsity in due if sparsity is not None]
        if not due and not rezero:
            return
        self._sync()
        if rezero:
            for wrapper in self._wrappers:
                wrapper.apply_masks()
        for wrapper, sparsity in due:
            wrapper.prune_to(sparsity)
            self._zero_slots(wrapper)

    def _zero_slots(self, wrapper):
        optimizer = self.model.optimizer
        for weight, mask in wrapper.weights_and_masks():
            for slot in _keras_internals.optimizer_slots(optimizer, weight):
                slot.assign(slot.value * keras.ops.cast(mask.value, slot.dtype))

    def on_train_end(self, logs=None):
        self._sync()
        last_step = self._iterations() - 1
        for wrapper in self._wrappers:
            wrapper.apply_masks()
            if wrapper.built:  # tfmot's count: the last step the callback saw
                wrapper.pruning_step.assign(last_step)
        self._hand_over(attached=False)


class PruningSummaries(keras.callbacks.Callback):
    """Records each pruned weight's sparsity at the end of every epoch.

    The figures go into `logs` (so `History` keeps them, as
    `sparsity/<weight path>`) and, with `log_dir`, into TensorBoard scalars
    (needs the `tensorboard` package).

    Args:
        log_dir: String, path or `None`. A TensorBoard log directory.
            Defaults to `None`.

    Example:

    ```python
    history = model.fit(
        x,
        y,
        epochs=5,
        callbacks=[
            keras_fastrain.pruning.UpdatePruningStep(),
            keras_fastrain.pruning.PruningSummaries(log_dir="logs/pruning"),
        ],
    )
    print({k: v[-1] for k, v in history.history.items() if k.startswith("sparsity/")})
    ```
    """

    def __init__(self, log_dir=None):
        super().__init__()
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(
                f"Invalid value for argument `log_dir`. Received: log_dir={log_dir!r}. "
                "Expected None or a directory path."
            )
        if log_dir is not None and not os.fspath(log_dir):
            raise ValueError(
                "Invalid value for argument `log_dir`. Received: log_dir=''. Expected None "
                "or a directory path (an empty one would write into the working directory)."
            )
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self._writer = None
        self._epochs_seen = 0

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        # tfmot's custom loops call on_epoch_end(batch=-1): the epoch is then
        # counted here.
        del batch
        if epoch is None or epoch < 0:
            epoch = self._epochs_seen
        self._epochs_seen = epoch + 1
        figures = {}
        for wrapper in pruning_wrappers(self.model):
            for path, sparsity in wrapper.sparsity().items():
                figures[f"sparsity/{path}"] = sparsity
        if logs is not None:
            logs.update(figures)
        if self.log_dir is not None:
            self._write(epoch, figures)

    def _write(self, epoch, figures):
        if self._writer is None:
            try:
                from tensorboard.summary import Writer
            except ImportError as error:
                raise ImportError(
                    "PruningSummaries(log_dir=...) writes TensorBoard scalars, which needs "
                    "the tensorboard package: pip install tensorboard."
                ) from error
            self._writer = Writer(self.log_dir)
        for name, value in figures.items():
            self._writer.add_scalar(name, value, step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
