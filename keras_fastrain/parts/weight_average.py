"""The weight-average part: `FastModel(ema=...)`, an exponential moving
average of the weights for evaluation.

The average of the last few hundred steps' weights scores better than the
weights of the last step, whose noise it smooths out (Polyak averaging; the
CIFAR-10 speed runs and Composer's EMA use it to reach a target accuracy in
fewer epochs). Keras has both halves: an optimizer's `use_ema` keeps the
average (and `fit` ends with the model holding it), and
`keras.callbacks.SwapEMAWeights` scores validation with it. At `compile`
this part turns on the optimizer's average with the momentum given; at
`fit` it adds `SwapEMAWeights` unless the user gave one, so the per-epoch
validation (and `EarlyStopping`'s time to target) sees the averaged
weights. Off by default: it changes the weights a fit ends with (to the
average, as Keras's `use_ema` does), and on a short run the average lags.
"""

import typing

import keras

from keras_fastrain import choices
from keras_fastrain.parts.base import Part
from keras_fastrain.validation import check_float

__all__ = ["WeightAveragePart"]

DEFAULT_MOMENTUM = 0.99


class WeightAveragePart(Part):
    """Averages the weights for evaluation when asked (`ema=`)."""

    name = "weight_average"
    options: typing.ClassVar[dict] = {"ema": None}

    def check_option(self, name, value):
        if value is None or isinstance(value, bool):
            return
        check_float("ema", value, low=0.0, high=1.0, closed=(False, False))

    def on_compile(self, plan):
        momentum = _momentum(plan.options["ema"])
        if momentum is None:
            return
        optimizer = plan.optimizer = keras.optimizers.get(plan.optimizer)
        if optimizer.built and not optimizer.use_ema:
            raise ValueError(
                "FastModel(ema=...) averages the weights in the optimizer, and this "
                "optimizer has been built without it: compile with a fresh optimizer, or "
                "give it use_ema=True yourself."
            )
        optimizer.use_ema = True
        optimizer.ema_momentum = momentum
        plan.decide(
            choices.Choice(
                "ema",
                momentum,
                f"validation scores the weights' moving average (momentum {momentum:g}, "
                f"about the last {round(1 / (1 - momentum))} steps); fit ends with the model "
                "holding it",
                changes_results=True,
            )
        )

    def on_run(self, plan):
        if plan.method != "fit" or _momentum(plan.options["ema"]) is None:
            return
        if not any(isinstance(c, keras.callbacks.SwapEMAWeights) for c in plan.callbacks):
            # First, so that every callback's on_test_begin sees the average.
            plan.callbacks.insert(0, keras.callbacks.SwapEMAWeights())


def _momentum(ema):
    if ema is None or ema is False:
        return None
    return DEFAULT_MOMENTUM if ema is True else float(ema)
