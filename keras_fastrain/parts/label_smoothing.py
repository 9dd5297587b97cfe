"""The label-smoothing part: `FastModel(label_smoothing=...)`.

Training on labels that keep a small share `s` of their weight spread over
every class (`1 - s + s / K` on the true class, `s / K` on the others)
stops the network from pushing its logits without bound to fit the last
few training samples; the CIFAR-10 speed runs and Composer use it to reach
a target accuracy in fewer epochs. At `compile` this part swaps each
crossentropy loss for the same loss with `label_smoothing` set: Keras's
`CategoricalCrossentropy` and `BinaryCrossentropy` take it, and integer
labels get `keras_fastrain.losses.SparseCategoricalCrossentropy`, Keras's
sparse loss with the argument added. Other losses (a regression head of a
multi-output model) stay as they are; a model with no crossentropy loss is
an error. Off by default: the training loss it reports is the smoothed one
(higher than Keras's for the same predictions), and the metrics are not
smoothed.
"""

import typing

import keras

from keras_fastrain import choices
from keras_fastrain._keras_internals import loss_function_arguments
from keras_fastrain.losses import SparseCategoricalCrossentropy
from keras_fastrain.parts.base import Part
from keras_fastrain.validation import check_float

__all__ = ["LabelSmoothingPart", "smoothed_loss"]

# Keras's crossentropy losses, by function and by class, and what smooths them.
_CLASSES = {
    keras.losses.categorical_crossentropy: keras.losses.CategoricalCrossentropy,
    keras.losses.binary_crossentropy: keras.losses.BinaryCrossentropy,
    keras.losses.sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
}
_SMOOTHED = {
    keras.losses.CategoricalCrossentropy: keras.losses.CategoricalCrossentropy,
    keras.losses.BinaryCrossentropy: keras.losses.BinaryCrossentropy,
    keras.losses.SparseCategoricalCrossentropy: SparseCategoricalCrossentropy,
    SparseCategoricalCrossentropy: SparseCategoricalCrossentropy,
}


class LabelSmoothingPart(Part):
    """Smooths the labels of the crossentropy losses when asked (`label_smoothing=`)."""

    name = "label_smoothing"
    options: typing.ClassVar[dict] = {"label_smoothing": None}

    def check_option(self, name, value):
        if value is not None:
            check_float("label_smoothing", value, low=0.0, high=1.0, closed=(False, False))

    def on_compile(self, plan):
        amount = plan.options["label_smoothing"]
        if amount is None:
            return
        loss = plan.compile_kwargs.get("loss")
        plan.compile_kwargs["loss"] = smoothed_loss(loss, amount)
        plan.decide(
            choices.Choice(
                "label_smoothing",
                amount,
                f"the crossentropy loss trains on labels smoothed by {amount:g}: "
                f"{1 - amount:g} + {amount:g}/classes on the true class, {amount:g}/classes "
                "on each other; the training loss shown is the smoothed one",
                changes_results=True,
            )
        )


def smoothed_loss(loss, amount):
    """`loss` (a name, function or `keras.losses.Loss`, or a list or dict of
    them, one per output) with every crossentropy smoothed by `amount`.

    Args:
        loss: What `compile` takes as `loss`.
        amount: Float in (0, 1).

    Returns:
        The loss, each crossentropy replaced by a `Loss` with
        `label_smoothing=amount`; other losses as given.

    Raises:
        ValueError: when no loss is a crossentropy Keras (or keras-fastrain)
            can smooth, or one already smooths by another amount.

    Example:

    ```python
    loss = smoothed_loss("sparse_categorical_crossentropy", 0.1)
    ```
    """
    found = []

    def smooth(one):
        replaced = _smoothed(one, amount)
        found.append(replaced is not None)
        return one if replaced is None else replaced

    if isinstance(loss, dict):
        result = {key: smooth(value) for key, value in loss.items()}
    elif isinstance(loss, (list, tuple)):
        result = type(loss)(smooth(value) for value in loss)
    else:
        result = smooth(loss)
    if not any(found):
        raise ValueError(
            f"Invalid value for argument `label_smoothing`: label_smoothing={amount!r} "
            f"smooths crossentropy losses, and the loss is {loss!r}. Expected a "
            "categorical, sparse categorical or binary crossentropy (a name, Keras's "
            "function or its keras.losses class), or label_smoothing=None."
        )
    return result


def _smoothed(loss, amount):
    """The smoothed loss for one output, or `None` when it is no crossentropy."""
    if isinstance(loss, str):
        try:
            loss = keras.losses.get(loss)
        except ValueError:
            return None
        # A class name ("CategoricalCrossentropy") gets Keras's function
        # in a wrapper, with the defaults: the function says which loss.
        loss = getattr(loss, "fn", loss)
    if callable(loss) and not isinstance(loss, keras.losses.Loss):
        smoothing = _CLASSES.get(loss)
        return None if smoothing is None else smoothing(label_smoothing=amount)
    smoothing = _SMOOTHED.get(type(loss))
    if smoothing is None:
        return None
    # The config, and what Keras leaves out of it: the axis, the dtype.
    config = {
        "axis": loss_function_arguments(loss).get("axis", -1),
        "dtype": loss.dtype,
        **loss.get_config(),
    }
    already = config.get("label_smoothing", 0.0)
    if already and already != amount:
        raise ValueError(
            f"Invalid value for argument `label_smoothing`. Received: label_smoothing={amount!r}"
            f", and the loss {loss.name!r} already smooths by {already!r}. Expected the "
            "same amount, or label_smoothing=None to keep the loss's own."
        )
    return smoothing.from_config({**config, "label_smoothing": amount})
