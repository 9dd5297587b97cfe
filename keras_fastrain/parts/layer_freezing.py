"""The layer-freezing part: `FastModel(layer_freezing=...)`.

Adds a `keras_fastrain.callbacks.LayerFreezing` to every `fit` (unless you
gave one): late in the fit the first layers stop training, stage by stage,
so their backward pass is skipped. Off by default: it changes which weights
the last steps train. The fit ends with every layer as trainable as it
began.
"""

import typing

from keras_fastrain.callbacks.layer_freezing import LayerFreezing
from keras_fastrain.parts.callback_part import CallbackPart
from keras_fastrain.validation import check_float

__all__ = ["LayerFreezingPart"]


class LayerFreezingPart(CallbackPart):
    """Freezes the first layers late in each fit when asked (`layer_freezing=`)."""

    name = "layer_freezing"
    options: typing.ClassVar[dict] = {"layer_freezing": None}
    callback_class = LayerFreezing

    def check_option(self, name, value):
        if value is None or isinstance(value, bool):
            return
        check_float("layer_freezing", value, low=0.0, high=1.0, closed=(True, False))

    def make_callback(self, option):
        if option is None or option is False:
            return None
        return LayerFreezing() if option is True else LayerFreezing(freeze_start=float(option))

    def check_compile(self, plan, callback):
        if plan.options.get("ema") not in (None, False):
            raise ValueError(
                f"Invalid value for argument `layer_freezing`: {plan.options['layer_freezing']!r}. "
                "Keras writes the moving average of ema= only into the weights still training "
                "when the fit ends, and frozen layers are not. Expected one of the two (set "
                "ema=None)."
            )

    def describe(self, callback):
        return callback.freeze_start, (
            f"after {callback.freeze_start:.0%} of each fit the first layers stop training, "
            f"in {callback.stages} stages, until all but the last layer with weights are "
            "frozen; the fit ends with every layer trainable as it began"
        )
