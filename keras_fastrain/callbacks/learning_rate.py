"""Horovod's `LearningRateScheduleCallback`, and the rate change it shares
with `LearningRateWarmupCallback`."""

import contextlib
import numbers

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.devices import host_array
from keras_fastrain.scaling import rate_comes_from_schedule
from keras_fastrain.validation import check_bool, check_float, check_int

__all__ = ["change_rate", "current_rate", "LearningRateScheduleCallback", "rate_during"]


def current_rate(model, owner):
    """The optimizer's fixed learning rate, as a float; `owner` names the
    callback in the error for a rate that comes from a schedule."""
    optimizer = model.optimizer
    if rate_comes_from_schedule(optimizer):
        raise ValueError(
            f"{owner} sets the learning rate, and this optimizer takes it from a "
            "LearningRateSchedule: give the optimizer a fixed rate."
        )
    return float(host_array(optimizer.learning_rate))


def change_rate(model, new_rate, momentum_correction):
    """Sets the optimizer's rate to `new_rate`; with `momentum_correction`,
    rescales SGD's momentum buffers by the new rate over the rate the
    optimizer had (Goyal et al.'s correction: Keras 3 compiles the momentum
    coefficient in as a constant, so Horovod's one-step change of the
    coefficient cannot be made). Other optimizers' state (Adam's moments,
    EMA copies, gradient accumulators) is not momentum and is left alone.
    Returns the rate the optimizer had."""
    _keras_internals.sync_jax_state(model)
    optimizer = model.optimizer
    old_rate = float(host_array(optimizer.learning_rate))
    optimizer.learning_rate = new_rate
    sgd = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
    if momentum_correction and old_rate > 0 and isinstance(sgd, keras.optimizers.SGD):
        for buffer in sgd.momentums if sgd.built else []:
            buffer.assign(buffer.value * (new_rate / old_rate))
    return old_rate


@contextlib.contextmanager
def rate_during(model, rate):
    """Sets the optimizer's fixed rate to `rate` in the `with` block (a
    fit) and puts the one it had back after it."""
    optimizer = model.optimizer
    before = float(host_array(optimizer.learning_rate))
    optimizer.learning_rate = rate
    try:
        yield
    finally:
        _keras_internals.sync_jax_state(model)
        optimizer.learning_rate = before


class LearningRateScheduleCallback(keras.callbacks.Callback):
    """Sets the learning rate to `initial_lr * multiplier(epoch)` (Horovod's
    callback of this name).

    From `start_epoch` up to (not including) `end_epoch`, the rate becomes
    `initial_lr` times the multiplier: at the first batch of each epoch
    (`staircase=True`), or at every batch from the fractional epoch. A
    number as `multiplier` means `multiplier ** epoch` (exponential decay).
    Each epoch's rate is logged as `lr`, as Horovod logs it.

    Args:
        initial_lr: Float > 0. The rate the multiplier scales.
        multiplier: Number, or a function `epoch -> number` (the epoch may
            be fractional without `staircase`).
        start_epoch: Integer >= 0. The first epoch adjusted. Defaults to 0.
        end_epoch: Integer or `None`. The first epoch not adjusted; `None`
            for no end. Defaults to `None`.
        staircase: Bool. Whether to change the rate once an epoch (`True`)
            or every batch. Defaults to `True`.
        momentum_correction: Bool. Whether to rescale an SGD momentum
            buffer by each change of the rate. Defaults to `True`.
        steps_per_epoch: Integer >= 1 or `None`. Batches per epoch, for
            `staircase=False`. Defaults to what `fit` says.

    Example:

    ```python
    # Divide the rate by 10 at epochs 30, 60 and 80, as Horovod's ImageNet
    # example (a function: a number would be raised to the epoch's power).
    def step(factor, start, end=None):
        return LearningRateScheduleCallback(0.1, lambda epoch: factor, start, end)


    callbacks = [step(1e-1, 30, 60), step(1e-2, 60, 80), step(1e-3, 80)]
    ```
    """

    def __init__(
        self,
        initial_lr,
        multiplier,
        start_epoch=0,
        end_epoch=None,
        staircase=True,
        momentum_correction=True,
        steps_per_epoch=None,
    ):
        super().__init__()
        self.initial_lr = check_float("initial_lr", initial_lr, low=0.0, closed=(False, True))
        if isinstance(multiplier, bool) or not (
            callable(multiplier) or isinstance(multiplier, numbers.Real)
        ):
            raise TypeError(
                f"Invalid value for argument `multiplier`. Received: multiplier={multiplier!r}. "
                "Expected a number or a function epoch -> number."
            )
        self.multiplier = multiplier
        self.start_epoch = check_int("start_epoch", start_epoch, minimum=0)
        self.end_epoch = (
            None if end_epoch is None else check_int("end_epoch", end_epoch, minimum=start_epoch)
        )
        self.staircase = check_bool("staircase", staircase)
        self.momentum_correction = check_bool("momentum_correction", momentum_correction)
        self.steps_per_epoch = (
            None if steps_per_epoch is None else check_int("steps_per_epoch", steps_per_epoch, 1)
        )
        self._epoch = 0

    def learning_rate_at(self, epoch):
        """The rate at a (fractional) `epoch`."""
        if not callable(self.multiplier):
            return self.initial_lr * float(self.multiplier) ** epoch
        value = self.multiplier(epoch)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"LearningRateScheduleCallback's `multiplier` returned {value!r} for epoch "
                f"{epoch}. Expected a number."
            )
        return self.initial_lr * float(value)

    def on_train_begin(self, logs=None):
        self._steps = self.steps_per_epoch or (self.params or {}).get("steps")
        if not self.staircase and self._steps is None:
            raise ValueError(
                "LearningRateScheduleCallback(staircase=False) needs the number of steps per "
                "epoch: fit does not know it for this data, so pass steps_per_epoch."
            )
        self._rate = current_rate(self.model, type(self).__name__)  # the last one set

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch < self.start_epoch or (
            self.end_epoch is not None and self._epoch >= self.end_epoch
        ):
            return
        if self.staircase and batch != 0:
            return
        epoch = self._epoch if self.staircase else self._epoch + batch / self._steps
        rate = self.learning_rate_at(epoch)
        if rate != self._rate:  # another callback may have changed it since
            change_rate(self.model, rate, self.momentum_correction)
            self._rate = rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # the optimizer's rate, whoever set it
            logs["lr"] = float(host_array(self.model.optimizer.learning_rate))
