"""The callbacks that drive pruning during `fit` (tfmot's names)."""

import os

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.pruning.wrapper import PruneLowMagnitude


def pruning_wrappers(model):
    """Every `PruneLowMagnitude` layer in `model`."""
    return [
        layer
        for layer in _keras_internals.all_layers(model)
        if isinstance(layer, PruneLowMagnitude)
    ]


class UpdatePruningStep(keras.callbacks.Callback):
    """Updates the masks at the schedule's steps and keeps pruned weights at 0.

    Before and after each batch it reads the optimizer's step and lets every
    `PruneLowMagnitude` recompute its masks if the schedule prunes at a step
    since it last looked (as tfmot: before the step runs, from the weights
    the previous step left); after each batch it sets the masked weights
    back to exactly zero (the forward pass never uses them, but optimizer
    momentum can move them). With `steps_per_execution` above 1 Keras calls
    these hooks once per compiled call, so a mask update may come up to that
    many steps late.

    Raises:
        ValueError: at the start of `fit`, if the model has nothing to prune.
    """

    def __init__(self):
        super().__init__()
        self._wrappers = []

    def on_train_begin(self, logs=None):
        self._wrappers = pruning_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                f"UpdatePruningStep: model {self.model.name!r} has no layer to prune; "
                "make it with keras_fastrain.pruning.prune_low_magnitude."
            )
        for wrapper in self._wrappers:
            wrapper.update_callback_attached = True

    def _sync(self):
        # JAX's fit keeps the variables' values in its own state between
        # steps; this public method puts them back (and the next step takes
        # them from the variables again).
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    def _update(self):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        for wrapper in self._wrappers:
            wrapper.update_masks(step)

    def on_train_batch_begin(self, batch, logs=None):
        self._sync()
        self._update()

    def on_train_batch_end(self, batch, logs=None):
        # Also here: with several steps per call, the next step may be due.
        self._sync()
        self._update()
        for wrapper in self._wrappers:
            wrapper.apply_masks()

    def on_train_end(self, logs=None):
        for wrapper in self._wrappers:
            wrapper.update_callback_attached = False


class PruningSummaries(keras.callbacks.Callback):
    """Records each pruned weight's sparsity at the end of every epoch.

    The figures go into `logs` (so `History` keeps them, as
    `sparsity/<weight path>`) and, with `log_dir`, into TensorBoard scalars
    (needs the `tensorboard` package).

    Args:
        log_dir: String or `None`. A TensorBoard log directory. Defaults to
            `None`.
    """

    def __init__(self, log_dir=None):
        super().__init__()
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(
                f"Invalid value for argument `log_dir`. Received: log_dir={log_dir!r}. "
                "Expected None or a directory path."
            )
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
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
