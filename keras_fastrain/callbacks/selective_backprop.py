"""`SelectiveBackprop`: train each step on the batch's hardest samples only.

Most samples of a batch are learned already: their loss is small and so is
what their gradient adds. Selective backprop (Jiang et al. 2019, "Focusing
on the Biggest Losers"; Composer's `SelectiveBackprop`) runs the forward
pass on the whole batch without gradients, keeps the `keep` share with the
highest loss, and runs the training step (forward and backward) on those
only. A forward pass costs about a third of a training step, so a step
that keeps half its batch costs about `1/3 + 1/2` of a full one.

The selecting step is Keras's own `train_step` on the kept rows, compiled
once next to Keras's (the kept count is a fixed share of the batch, so the
shapes do not change from step to step). Steps between `start` and `end`
of the run (shares of its epochs), every `interval`-th compiled call, use
it; the others are Keras's. The training metrics a selecting step reports
are those of the kept, hardest samples, so they read worse than Keras's;
validation is unchanged.
"""

import contextlib
import math

import keras
from keras import ops

from keras_fastrain.callbacks.step_variants import FitProgress, StepVariants, refuse_jax_nnx
from keras_fastrain.validation import check_float, check_int

__all__ = ["SelectiveBackprop", "per_sample_loss"]


class SelectiveBackprop(keras.callbacks.Callback):
    """Trains steps on the highest-loss share of each batch.

    Args:
        keep: Float in (0, 1). The share of each batch a selecting step
            trains on (at least one sample). Defaults to 0.5.
        start: Float in [0, 1). The share of the fit's epochs after which
            steps select. Defaults to 0.0.
        end: Float in (start, 1]. The share of the fit's epochs after which
            steps stop selecting. Defaults to 1.0.
        interval: Integer >= 1. Every `interval`-th compiled call in the
            window selects (`2`: every other). Defaults to 1.

    The model must have one output and one loss (a name, a function or a
    `keras.losses.Loss`), and its data labels (`y`): the loss of each
    sample picks the hardest.

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[SelectiveBackprop(keep=0.5, start=0.5)])
    ```
    """

    def __init__(self, keep=0.5, start=0.0, end=1.0, interval=1):
        super().__init__()
        self.keep = check_float("keep", keep, low=0.0, high=1.0, closed=(False, False))
        self.start = check_float("start", start, low=0.0, high=1.0, closed=(True, False))
        self.end = check_float("end", end, low=self.start, high=1.0, closed=(False, True))
        self.interval = check_int("interval", interval, minimum=1)
        self._variants = self._step = None
        self._progress, self._calls = FitProgress(), 0
        self.selected_calls = 0

    def on_train_begin(self, logs=None):
        model = self.model
        refuse_jax_nnx(self)
        loss = per_sample_loss(model.loss)  # refuses a loss it cannot split
        self._calls = self.selected_calls = 0
        self._progress = FitProgress()
        self._variants = StepVariants(model, self)
        self._step = _selecting_step(model, model.train_step, self.keep, loss)

    def on_epoch_begin(self, epoch, logs=None):
        self._progress.epoch_begin(self.params, epoch)

    def on_train_batch_begin(self, batch, logs=None):
        progress = self._progress.at(batch)
        selecting = self.start <= progress < self.end and self._calls % self.interval == 0
        self._calls += 1
        self.selected_calls += int(selecting)
        self._variants.use("selecting" if selecting else None, self._step)

    def on_train_batch_end(self, batch, logs=None):
        self._variants.use(None)  # Keras's step between calls

    def on_train_end(self, logs=None):
        if self._variants is not None:
            self._variants.close()
        self._variants = self._step = None


def per_sample_loss(loss):
    """A function `(y_true, y_pred) -> loss of each sample` for one loss.

    Args:
        loss: What a one-output model is compiled with: a loss name
            (`"crossentropy"` picks binary, sparse or categorical from the
            shapes, as Keras does), a function or a `keras.losses.Loss`.

    Returns:
        The function: a `Loss`'s unreduced `call`, or the loss function on
        labels brought to the prediction's rank as Keras does, averaged
        over any axes after the first.

    Raises:
        ValueError: when there is no loss, or several.

    Example:

    ```python
    losses = per_sample_loss(model.loss)(y_batch, model(x_batch))  # shape (batch,)
    ```
    """
    if loss is None or isinstance(loss, (dict, list, tuple)):
        raise ValueError(
            "SelectiveBackprop picks each batch's hardest samples by one loss, and the "
            f"model was compiled with loss={loss!r}. Expected one loss (a name, a function "
            "or a keras.losses.Loss) for a model with one output."
        )
    by_shape = isinstance(loss, str) and loss.lower() in ("crossentropy", "ce")
    if isinstance(loss, str) and not by_shape:
        try:
            loss = keras.losses.get(loss)
        except ValueError:
            raise ValueError(f"SelectiveBackprop: unknown loss {loss!r}.") from None
    if isinstance(loss, keras.losses.Loss):
        unreduced = loss.call  # a Keras loss aligns the ranks itself
    else:

        def unreduced(y_true, y_pred):
            y_true = _same_rank(ops.convert_to_tensor(y_true), y_pred)
            function = _crossentropy_for(y_true, y_pred) if by_shape else loss
            return function(y_true, y_pred)

    def each(y_true, y_pred):
        values = unreduced(y_true, ops.cast(y_pred, "float32"))
        return _per_row(values)

    return each


def _per_row(values):
    """`values` averaged over every axis after the first."""
    rank = len(values.shape)
    return ops.mean(values, axis=tuple(range(1, rank))) if rank > 1 else values


def _same_rank(y_true, y_pred):
    """Labels one rank off the prediction, with a last axis of 1 on the
    longer side, brought to its rank (what Keras's loss wrapper does)."""
    true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    if true_rank == pred_rank + 1 and y_true.shape[-1] == 1:
        return ops.squeeze(y_true, axis=-1)
    if pred_rank == true_rank + 1 and y_pred.shape[-1] == 1:
        return ops.expand_dims(y_true, axis=-1)
    return y_true


def _crossentropy_for(y_true, y_pred):
    """Keras's pick for `"crossentropy"`: binary for one output unit,
    sparse for labels without a class axis, else categorical."""
    if y_pred.shape[-1] == 1:
        return keras.losses.binary_crossentropy
    if len(y_true.shape) < len(y_pred.shape) or y_true.shape[-1] == 1:
        return keras.losses.sparse_categorical_crossentropy
    return keras.losses.categorical_crossentropy


def _selecting_step(model, keras_step, keep, loss):
    """Keras's `train_step` on the `keep` share of the batch with the
    highest loss, as the backend's step signature takes it."""

    def hardest(data, y_pred):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError(
                "SelectiveBackprop picks the hardest samples by their loss, and the data has "
                "no labels (y): give fit labels, or remove SelectiveBackprop."
            )
        losses = ops.stop_gradient(loss(y, y_pred))
        if sample_weight is not None:  # per row, or per row and time step
            losses = losses * ops.cast(_per_row(sample_weight), losses.dtype)
        rows = losses.shape[0]
        kept = max(1, math.ceil(keep * rows)) if rows is not None else None
        if kept is None:  # a batch of unknown size (TensorFlow's graph)
            count = ops.cast(ops.shape(losses)[0], "float32")
            kept = ops.maximum(1, ops.cast(ops.ceil(keep * count), "int32"))
        _, indices = ops.top_k(losses, kept)
        taken = keras.tree.map_structure(lambda t: ops.take(t, indices, axis=0), (x, y))
        if sample_weight is None:
            return keras.utils.pack_x_y_sample_weight(*taken)
        return keras.utils.pack_x_y_sample_weight(*taken, ops.take(sample_weight, indices, axis=0))

    if keras.backend.backend() == "jax":

        def step(state, data):
            x = keras.utils.unpack_x_y_sample_weight(data)[0]
            y_pred, _ = model.stateless_call(state[0], state[1], x, training=False)
            return keras_step(state, hardest(data, y_pred))

        return step

    def step(data):
        x = keras.utils.unpack_x_y_sample_weight(data)[0]
        with _no_gradients():
            y_pred = ops.stop_gradient(model(x, training=False))
        return keras_step(hardest(data, y_pred))

    return step


def _no_gradients():
    """PyTorch records every operation for a backward pass unless told not
    to; TensorFlow's step records only inside its own tape."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()
