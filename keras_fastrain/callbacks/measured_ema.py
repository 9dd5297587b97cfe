"""`MeasuredEMA`: Keras's `SwapEMAWeights`, kept only where the moving
average of the weights scores better on the fit's own validation data.

The average of the last few hundred steps' weights (Polyak averaging; an
optimizer's `use_ema`) usually scores better than the last step's weights,
whose noise it smooths out, and a fit that stops at a target then stops
sooner. It can also score worse: on a short run, where it still remembers
the first steps, or where the learning rate has already annealed. Keras's
`SwapEMAWeights` scores every validation with the average and `fit` ends
with the model holding it, whether or not it pays.

`MeasuredEMA` measures it, once per fit. Until the optimizer has taken
`3 / (1 - ema_momentum)` steps (300 at Keras's 0.99; the average then holds
under 5% of the weights it started from), validation scores the last
weights, as without an average. The first validation after that scores
the average, then the last weights again on the same data (one more pass
over the validation data, counted in the fit's time like any callback's).
With several workers, the two scores are averaged over them, so every
worker decides the same. Where the average scores at least as well on
`monitor`, it is kept: this and every later validation score it, and the
fit ends with the model holding it (as with `SwapEMAWeights`). Otherwise
the fit goes on as plain Keras would have without the average: the logs of
that epoch carry the last weights' scores, and the fit ends with the last
weights. A fit that ends before it could measure (no validation data, or
too few steps) also ends with the last weights. The optimizer keeps
updating the average throughout (its `use_ema` is left as it is, so a
checkpoint saves the optimizer as given); only Keras's overwrite of the
weights with the average as the fit ends is skipped. The decision is told
to the user as it is made, and kept in `decision` and `scores`.

The second pass reads the validation data again: arrays and a finite
dataset give the same batches; a dataset that yields other batches each
time (shuffled with `validation_steps`, or endless) is compared on
different batches. Put it first in `callbacks`, so that every callback
after it sees the logs it settles.
"""

import math
import time

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.callbacks.metric_direction import infer_mode
from keras_fastrain.devices import host_array
from keras_fastrain.distribute import consensus
from keras_fastrain.log import tell
from keras_fastrain.validation import check_choice

__all__ = ["MeasuredEMA"]

# The average holds m**n of the weights it started from after n steps at
# momentum m: after 3 / (1 - m) steps, under 5% (e**-3).
WARMUP_TIME_CONSTANTS = 3


class MeasuredEMA(keras.callbacks.SwapEMAWeights):
    """Scores validation with the weights' moving average where it pays.

    Use it instead of `keras.callbacks.SwapEMAWeights` (first in the
    callbacks), with an optimizer that keeps the average
    (`use_ema=True`); see this module for what is measured and when.

    Args:
        monitor: String. The validation metric compared (`"val_..."`), as
            the fit's logs name it. Defaults to `"val_loss"`.
        mode: `"auto"`, `"min"` or `"max"`: whether `monitor` should go down
            or up (`"auto"`: from its name). Defaults to `"auto"`.
        verbose: Integer, bool or `"auto"`. `0` keeps the decision quiet.
            Defaults to `1`.

    Attributes:
        kept: `True` (the average is kept), `False` (it scored worse) or
            `None` (not measured yet, or the fit ended before it could be).
        scores: Dict `{"average": float, "last": float}` of `monitor` at the
            measurement (averaged over the workers), or `None`.
        decision: String. What was decided and why, or `None` during a fit.

    Example:

    ```python
    model.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="mse")
    model.fit(x, y, validation_split=0.2, epochs=5, callbacks=[MeasuredEMA()])
    ```
    """

    def __init__(self, monitor="val_loss", mode="auto", verbose=1):
        super().__init__(swap_on_epoch=False)
        if not isinstance(monitor, str) or not monitor.startswith("val_"):
            raise ValueError(
                f"Invalid value for argument `monitor`: {monitor!r}. Expected the name of a "
                "validation metric, as the fit's logs have it (such as 'val_loss')."
            )
        check_choice("mode", mode, ("auto", "min", "max"))
        if mode == "auto":
            mode = infer_mode(monitor)
            if mode is None:
                raise ValueError(
                    f"Invalid value for argument `mode`: 'auto'. The direction of {monitor!r} "
                    "is not known from its name: give mode='min' or mode='max'."
                )
        if verbose != "auto" and not isinstance(verbose, (bool, int)):
            raise TypeError(
                f"Invalid value for argument `verbose`. Received: verbose={verbose!r}. "
                "Expected an integer, a bool or 'auto'."
            )
        self.monitor = monitor
        self.mode = mode
        self.verbose = verbose
        self.kept = None
        self.scores = None
        self.decision = None
        self._in_fit = False
        self._measuring = False
        self._optimizers = []

    def _averaging_optimizers(self):
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        found = getattr(optimizer, "optimizers", [optimizer])
        found = [o for o in found if getattr(o, "use_ema", False)]
        if not found:
            raise ValueError(
                "MeasuredEMA compares the optimizer's moving average of the weights with the "
                "weights, and this model's optimizer keeps none: give it use_ema=True (or "
                "FastModel ema='auto')."
            )
        return found

    def _holds_average(self):
        """Whether the fit must end without writing the average into the
        weights: until it is measured and kept."""
        return self._in_fit and self.kept is not True

    def _steps(self):
        # host_array reads a MirroredVariable of a tf.distribute strategy too.
        return int(host_array(self._optimizers[0].iterations))

    def close(self):
        """Gives the fit's end back to Keras (the average written into the
        weights when `use_ema` is on). `on_train_end` does it; FastModel
        does it for a fit that failed. After a plain `fit` that failed, the
        next fit with this callback does it."""
        for optimizer in self._optimizers:
            _keras_internals.hold_average_at_fit_end(optimizer, None)
        self._optimizers = []
        self._in_fit = False

    # -- Keras's hooks --------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.close()
        self._optimizers = self._averaging_optimizers()
        for optimizer in self._optimizers:
            _keras_internals.hold_average_at_fit_end(optimizer, self._holds_average)
        momentum = max(float(o.ema_momentum) for o in self._optimizers)
        self._warmup_steps = (
            math.ceil(WARMUP_TIME_CONSTANTS / (1.0 - momentum)) if momentum < 1 else math.inf
        )
        self.kept, self.scores, self.decision = None, None, None
        self._in_fit, self._measuring = True, False
        # Keras's own predict end can leave the average in the model (see
        # on_predict_end); the measurement starts from the weights.
        super().on_test_end(logs)

    def on_test_begin(self, logs=None):
        if self._in_fit and self.kept is None:
            # A collective: every worker validates at the same epochs.
            if not consensus.any_worker(self._steps() >= self._warmup_steps):
                return
            self._measuring = True
        if self.kept is False or (not self._in_fit and self.kept is None):
            return
        super().on_test_begin(logs)

    def on_predict_begin(self, logs=None):
        if self.kept:
            super().on_predict_begin(logs)

    def on_predict_end(self, logs=None):
        # Keras's own swaps back only when the average is *not* in the model
        # (keras/src/callbacks/swap_ema_weights.py, 3.15.1), which leaves it
        # there after a prediction; its test end puts the weights back.
        if self.kept:
            super().on_test_end(logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._measuring:
            self._measuring = False
            self._measure(epoch, logs if logs is not None else {})

    def on_train_end(self, logs=None):
        if self.kept is None:
            self.decision = (
                "not measured: the fit had no validation after the average's first "
                f"{self._warmup_steps} steps, so it scored and ended with the last weights"
            )
            tell(f"MeasuredEMA: {self.decision}", self.verbose)
        self.close()

    # -- the measurement ------------------------------------------------------

    def _measure(self, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(
                f"MeasuredEMA monitors {self.monitor!r}, which the fit's logs do not have "
                f"(they have {sorted(logs)}): give monitor= one of the validation metrics."
            )
        started = time.perf_counter()
        last_logs = _keras_internals.evaluate_fit_validation(self.model)
        seconds = time.perf_counter() - started
        name = self.monitor.removeprefix("val_")
        local = [float(logs[self.monitor]), float(last_logs.get(name, math.nan))]
        rows = consensus.gather(local)
        average = sum(row[0] for row in rows) / len(rows)
        last = sum(row[1] for row in rows) / len(rows)
        self.scores = {"average": average, "last": last}
        self.kept = _at_least_as_good(average, last, self.mode)
        workers = f", averaged over {len(rows)} workers" if len(rows) > 1 else ""
        compared = (
            f"{self.monitor} {average:.4g} with the average against {last:.4g} with the last "
            f"weights{workers}, at epoch {epoch + 1} (step {self._steps()}; the second "
            f"validation took {seconds:.1f} s)"
        )
        if self.kept:
            self.decision = f"kept the weights' moving average: {compared}"
        else:
            self.decision = (
                f"dropped the weights' moving average, which scored worse: {compared}; "
                "the fit goes on and ends with the last weights"
            )
            logs.update({f"val_{key}": value for key, value in last_logs.items()})
        tell(f"MeasuredEMA: {self.decision}", self.verbose)


def _at_least_as_good(average, last, mode):
    """Whether the average's score is at least as good as the last
    weights'; a NaN score is the worst."""
    if math.isnan(average):
        return False
    if math.isnan(last):
        return True
    return average <= last if mode == "min" else average >= last
