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

`ema="auto"` measures it instead: the optimizer keeps the average
(momentum 0.99), and each `fit` gets a `keras_fastrain.callbacks.MeasuredEMA`,
which scores the first validation after the average's first 300 steps with
both the average and the last weights and keeps the average only if it
scores at least as well, on the monitor of the fit's `EarlyStopping` (else
`val_loss`). Otherwise, and in a fit without validation data, the fit
scores and ends with the last weights, as plain Keras.

The short fits of the measurements before a fit (the batch search, the XLA
measurement, the range test) end without writing the average into the
weights, which they keep training. What it decided, with
both scores, is in `model.choices["ema"]` after the fit.
"""

import typing

import keras

from keras_fastrain import _keras_internals, choices
from keras_fastrain.callbacks.measured_ema import MeasuredEMA
from keras_fastrain.callbacks.metric_direction import infer_mode
from keras_fastrain.parts.base import Part
from keras_fastrain.validation import AUTO, check_float

__all__ = ["WeightAveragePart"]

DEFAULT_MOMENTUM = 0.99


class WeightAveragePart(Part):
    """Averages the weights for evaluation when asked (`ema=`)."""

    name = "weight_average"
    options: typing.ClassVar[dict] = {"ema": None}

    def check_option(self, name, value):
        if value is None or isinstance(value, bool) or value == AUTO:
            return
        if isinstance(value, str):
            raise ValueError(
                f"Invalid value for argument `ema`. Received: ema={value!r}. Expected None, "
                "True, 'auto' or a momentum in (0, 1)."
            )
        check_float("ema", value, low=0.0, high=1.0, closed=(False, False))

    def on_compile(self, plan):
        momentum = _momentum(plan.options["ema"])
        if momentum is None:
            return
        plan.optimizer = keras.optimizers.get(plan.optimizer)
        # A LossScaleOptimizer of the user's keeps the average in its inner one.
        optimizer = getattr(plan.optimizer, "inner_optimizer", plan.optimizer)
        if optimizer.built and not optimizer.use_ema:
            raise ValueError(
                "FastModel(ema=...) averages the weights in the optimizer, and this "
                "optimizer has been built without it: compile with a fresh optimizer, or "
                "give it use_ema=True yourself."
            )
        optimizer.use_ema = True
        optimizer.ema_momentum = momentum
        # The measurements' short fits (batch search, XLA, range test) end
        # without writing the average into the weights they keep training.
        _keras_internals.hold_average_at_fit_end(optimizer, _always)
        steps = f"momentum {momentum:g}, about the last {round(1 / (1 - momentum))} steps"
        if plan.options["ema"] == AUTO:
            reason = (
                f"the optimizer keeps the weights' moving average ({steps}); each fit scores "
                "its validation with it and with the last weights once, and keeps it only if "
                "it scores at least as well (MeasuredEMA)"
            )
        else:
            reason = (
                f"validation scores the weights' moving average ({steps}); fit ends with the "
                "model holding it"
            )
        plan.decide(
            choices.Choice(
                "ema",
                plan.options["ema"] if plan.options["ema"] == AUTO else momentum,
                reason,
                changes_results=True,
            )
        )

    def on_run(self, plan):
        option = plan.options["ema"]
        if plan.method != "fit" or _momentum(option) is None:
            return
        optimizer = plan.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        # Keras's fit end from here on; the next fit's measurements hold it again.
        _keras_internals.hold_average_at_fit_end(optimizer, None)
        plan.stack.callback(_keras_internals.hold_average_at_fit_end, optimizer, _always)
        own = [c for c in plan.callbacks if isinstance(c, keras.callbacks.SwapEMAWeights)]
        if own:  # the user's own, MeasuredEMA included
            if option == AUTO and not isinstance(own[0], MeasuredEMA):
                plan.decide(
                    choices.Choice(
                        "ema",
                        AUTO,
                        f"not measured: the fit's own {type(own[0]).__name__} scores every "
                        "validation with the average, and the fit ends holding it",
                        changes_results=True,
                    )
                )
            return
        if option != AUTO:
            # First, so that every callback's on_test_begin sees the average.
            plan.callbacks.insert(0, keras.callbacks.SwapEMAWeights())
            return
        measured = MeasuredEMA(*_monitor(plan.callbacks), verbose=plan.verbose)
        plan.callbacks.insert(0, measured)  # first: later callbacks see the logs it settles
        plan.stack.callback(measured.close)  # also for a fit that failed

        def report(result):
            plan.decide(choices.Choice("ema", AUTO, measured.decision, changes_results=True))
            return result

        plan.results.append(report)


def _always():
    return True


def _monitor(callbacks):
    """The metric and direction the fit's `EarlyStopping` monitors, if it
    monitors a validation metric of known direction; else `val_loss`."""
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if isinstance(callback, keras.callbacks.EarlyStopping) and str(monitor).startswith("val_"):
            mode = getattr(callback, "mode", "auto")
            mode = mode if mode in ("min", "max") else infer_mode(monitor)
            if mode is not None:
                return monitor, mode
    return "val_loss", "min"


def _momentum(ema):
    if ema is None or ema is False:
        return None
    return DEFAULT_MOMENTUM if ema is True or ema == AUTO else float(ema)
