"""The selective-backprop part: `FastModel(selective_backprop=...)`.

Adds a `keras_fastrain.callbacks.SelectiveBackprop` to every `fit` (unless
you gave one): each step runs the forward pass on the whole batch, keeps
the share with the highest loss, and trains on those only. The loss is
checked at `compile` (after label smoothing, whose loss it then ranks by):
it must be one loss, which gives each sample's value. Off by default: it
changes what each step trains on, and the training metrics it reports are
those of the hardest samples.
"""

import typing

from keras_fastrain.callbacks.selective_backprop import SelectiveBackprop, per_sample_loss
from keras_fastrain.parts.callback_part import CallbackPart
from keras_fastrain.validation import check_float

__all__ = ["SelectiveBackpropPart"]

DEFAULT_KEEP = 0.5


class SelectiveBackpropPart(CallbackPart):
    """Trains each step on its batch's hardest samples when asked (`selective_backprop=`)."""

    name = "selective_backprop"
    options: typing.ClassVar[dict] = {"selective_backprop": None}
    callback_class = SelectiveBackprop

    def check_option(self, name, value):
        if value is None or isinstance(value, bool):
            return
        check_float("selective_backprop", value, low=0.0, high=1.0, closed=(False, False))

    def make_callback(self, option):
        if option is None or option is False:
            return None
        return SelectiveBackprop(keep=DEFAULT_KEEP if option is True else float(option))

    def check_compile(self, plan, callback):
        try:
            per_sample_loss(plan.compile_kwargs.get("loss"))
        except ValueError as error:
            raise ValueError(
                f"Invalid value for argument `selective_backprop`: {callback.keep!r}. {error}"
            ) from None

    def describe(self, callback):
        return callback.keep, (
            f"each step trains on the {callback.keep:.0%} of its batch with the highest loss, "
            "after a forward pass on the whole batch; training metrics are those of the "
            "samples kept"
        )
