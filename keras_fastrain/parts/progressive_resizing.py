"""The progressive-resizing part: `FastModel(progressive_resizing=...)`.

Adds a `keras_fastrain.callbacks.ProgressiveResizing` to every `fit` (unless
you gave one): the first part of the fit trains on images scaled down, the
scale grows, and the end trains at full size. Off by default: it changes
what the early steps see, and it needs a model that takes smaller images
(convolutions ending in global pooling), which the callback checks when
the fit starts.
"""

import typing

from keras_fastrain.callbacks.progressive_resizing import ProgressiveResizing
from keras_fastrain.parts.callback_part import CallbackPart
from keras_fastrain.validation import check_float

__all__ = ["ProgressiveResizingPart"]


class ProgressiveResizingPart(CallbackPart):
    """Trains on smaller images early in each fit when asked (`progressive_resizing=`)."""

    name = "progressive_resizing"
    options: typing.ClassVar[dict] = {"progressive_resizing": None}
    callback_class = ProgressiveResizing

    def check_option(self, name, value):
        if value is None or isinstance(value, bool):
            return
        check_float("progressive_resizing", value, low=0.0, high=1.0, closed=(False, False))

    def make_callback(self, option):
        if option is None or option is False:
            return None
        return ProgressiveResizing() if option is True else ProgressiveResizing(float(option))

    def describe(self, callback):
        return callback.initial_scale, (
            f"images scaled by {callback.initial_scale:g} for the first "
            f"{callback.delay_fraction:.0%} of each fit, growing to full size, full size for "
            f"the last {callback.finetune_fraction:.0%}; validation sees full size"
        )
