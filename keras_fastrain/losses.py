"""Label smoothing for integer labels, which Keras's sparse loss lacks.

Keras's `CategoricalCrossentropy` and `BinaryCrossentropy` take
`label_smoothing`; `SparseCategoricalCrossentropy`, the loss most image
classifiers are compiled with (integer labels), does not. This module's
`SparseCategoricalCrossentropy` is Keras's, with the same arguments, the
same results at `label_smoothing=0`, and `label_smoothing` added: the
integer labels are one-hot encoded over the prediction's classes and
smoothed as Keras's categorical loss smooths them (`1 - s + s / K` on the
true class, `s / K` on every other of the `K` classes).
"""

import keras
from keras import ops

from keras_fastrain._keras_internals import set_loss_mask
from keras_fastrain.validation import check_float

__all__ = ["SparseCategoricalCrossentropy", "sparse_categorical_crossentropy"]


def sparse_categorical_crossentropy(
    y_true, y_pred, from_logits=False, ignore_class=None, axis=-1, label_smoothing=0.0
):
    """Keras's `sparse_categorical_crossentropy`, with `label_smoothing`.

    Args:
        y_true: Integer labels, shaped as `y_pred` without its class axis
            (or with a class axis of size 1).
        y_pred: Probabilities (or logits, with `from_logits=True`).
        from_logits: Bool. Whether `y_pred` holds logits. Defaults to
            `False`.
        ignore_class: Integer or `None`. A label whose entries count zero,
            as in Keras. Defaults to `None`.
        axis: Integer. The class axis. Defaults to `-1`.
        label_smoothing: Float in [0, 1]. Defaults to `0.0` (Keras's loss).

    Returns:
        The loss of each entry, shaped as `y_true`.

    Example:

    ```python
    y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    loss = sparse_categorical_crossentropy([1, 2], y_pred, label_smoothing=0.1)
    ```
    """
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    if not label_smoothing:
        return keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred, from_logits=from_logits, ignore_class=ignore_class, axis=axis
        )
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[axis] == 1:
        y_true = ops.squeeze(y_true, axis=axis)
    y_true = ops.cast(y_true, "int32")
    valid = None
    if ignore_class is not None:
        valid = ops.not_equal(y_true, ignore_class)
        y_true = ops.where(valid, y_true, 0)
    classes = y_pred.shape[axis]
    one_hot = ops.one_hot(y_true, classes, axis=axis, dtype=y_pred.dtype)
    # Smoothed here over the class axis: Keras's categorical loss smooths
    # over the last axis whatever its `axis`.
    smoothed = one_hot * (1.0 - label_smoothing) + label_smoothing / classes
    loss = keras.losses.categorical_crossentropy(
        smoothed, y_pred, from_logits=from_logits, axis=axis
    )
    if valid is not None:
        loss = ops.where(valid, loss, ops.zeros_like(loss))
        set_loss_mask(loss, valid)  # Keras's reduction then averages the valid ones
    return loss


@keras.saving.register_keras_serializable(package="keras_fastrain")
class SparseCategoricalCrossentropy(keras.losses.SparseCategoricalCrossentropy):
    """`keras.losses.SparseCategoricalCrossentropy` with `label_smoothing`.

    A subclass of Keras's loss, taking its arguments in its order and
    `label_smoothing` last; at `label_smoothing=0` it computes exactly
    Keras's loss. Saved models load it back (it is registered).

    Args:
        from_logits: Bool. Defaults to `False`.
        ignore_class: Integer or `None`. Defaults to `None`.
        reduction: As Keras's. Defaults to `"sum_over_batch_size"`.
        axis: Integer. The class axis. Defaults to `-1`.
        name: String. Defaults to `"sparse_categorical_crossentropy"`.
        dtype: As Keras's. Defaults to `None`.
        label_smoothing: Float in [0, 1]: the share of the label moved from
            the true class to all classes evenly (as in Keras's
            `CategoricalCrossentropy`). Defaults to `0.0`.

    Example:

    ```python
    model.compile(
        "adam",
        keras_fastrain.losses.SparseCategoricalCrossentropy(label_smoothing=0.1),
        metrics=["accuracy"],
    )
    ```
    """

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="sparse_categorical_crossentropy",
        dtype=None,
        label_smoothing=0.0,
    ):
        super().__init__(
            from_logits=from_logits,
            ignore_class=ignore_class,
            reduction=reduction,
            axis=axis,
            name=name,
            dtype=dtype,
        )
        self.label_smoothing = check_float("label_smoothing", label_smoothing, low=0.0, high=1.0)
        self.axis = axis
        self.fn = sparse_categorical_crossentropy
        self._fn_kwargs["label_smoothing"] = self.label_smoothing

    def get_config(self):
        # Keras's config of this loss leaves out `axis` and `dtype`.
        return {
            **super().get_config(),
            "axis": self.axis,
            "dtype": self.dtype,
            "label_smoothing": self.label_smoothing,
        }
