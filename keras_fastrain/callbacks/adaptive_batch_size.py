"""`AdaptiveBatchSize`: grow the batch during `fit` on a schedule.

Smith et al. (2018, "Don't Decay the Learning Rate, Increase the Batch
Size") and AdaBatch grow the batch at given epochs: early epochs take many
small, noisy steps; later ones take fewer, larger, faster steps. The batch
changes between epochs in a `keras_fastrain.batching.ResizableDataset`;
`fit` is told the new number of steps, so its progress bar and the epoch's
end stay right. The learning rate follows a named rule at every change.

The schedule depends only on the epoch, so every worker changes at the
same epoch to the same size.
"""

import math

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.batching.resizable import ResizableDataset
from keras_fastrain.callbacks.distributed import _sync_jax_state
from keras_fastrain.devices import host_array
from keras_fastrain.scaling import SCALING_RULES
from keras_fastrain.validation import check_choice, check_int


class AdaptiveBatchSize(keras.callbacks.Callback):
    """Multiplies the batch size at given epochs and scales the learning rate.

    Args:
        data: The `ResizableDataset` that `fit` trains on.
        schedule: Dict `{epoch: factor}`: at the start of `epoch` (0-based)
            the batch size is multiplied by the integer `factor` >= 1.
        max_batch_size: Integer or `None`. The batch never grows past it.
        learning_rate_rule: `"linear"`, `"sqrt"` or `None`: at every change
            by a ratio `r` the learning rate is multiplied by `r`,
            `sqrt(r)` or 1 (Smith et al.'s recipe keeps it). Defaults to
            `"sqrt"`.
        verbose: Integer. 1 prints every change.

    Attributes:
        changes: List of `(epoch, batch_size, learning_rate)`, one per change.
    """

    def __init__(self, data, schedule, max_batch_size=None, learning_rate_rule="sqrt", verbose=0):
        super().__init__()
        if not isinstance(data, ResizableDataset):
            raise TypeError(
                "Invalid value for argument `data`. Received: data of type "
                f"{type(data).__name__}. Expected a keras_fastrain.batching."
                "ResizableDataset: Keras fixes the batch size of arrays when fit "
                "starts. Wrap them: data = ResizableDataset(x, y, batch_size=64), "
                "then model.fit(data, callbacks=[AdaptiveBatchSize(data, ...)])."
            )
        if not isinstance(schedule, dict) or not schedule:
            raise TypeError(
                f"Invalid value for argument `schedule`. Received: schedule={schedule!r}. "
                "Expected a non-empty dict {epoch: factor}."
            )
        for epoch, factor in schedule.items():
            check_int("schedule epoch", epoch, minimum=0)
            check_int("schedule factor", factor, minimum=1)
        self.data = data
        self.schedule = dict(schedule)
        self.max_batch_size = (
            None
            if max_batch_size is None
            else check_int("max_batch_size", max_batch_size, minimum=data.batch_size)
        )
        self.learning_rate_rule = check_choice(
            "learning_rate_rule", learning_rate_rule, SCALING_RULES
        )
        self.verbose = check_int("verbose", verbose, minimum=0)
        self.changes = []

    def on_epoch_begin(self, epoch, logs=None):
        factor = self.schedule.get(epoch, 1)
        old = self.data.batch_size
        new = old * factor
        if self.max_batch_size is not None:
            new = min(new, self.max_batch_size) // self.data.multiple_of * self.data.multiple_of
        if new <= old:
            return
        self.data.batch_size = new
        _keras_internals.set_running_fit_steps(self.data.num_batches)
        rate = self._scale_learning_rate(new / old)
        self.changes.append((epoch, new, rate))
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: batch size {old} -> {new}, learning rate {rate:.3g}.")

    def _scale_learning_rate(self, ratio):
        optimizer = self.model.optimizer
        rate = float(host_array(optimizer.learning_rate))
        if self.learning_rate_rule is None:
            return rate
        config = getattr(optimizer, "inner_optimizer", optimizer).get_config()
        if isinstance(config.get("learning_rate"), dict):  # a serialized schedule
            raise ValueError(
                "AdaptiveBatchSize scales the learning rate, and this optimizer takes it "
                "from a LearningRateSchedule: give the optimizer a fixed rate, or pass "
                "learning_rate_rule=None."
            )
        rate *= ratio if self.learning_rate_rule == "linear" else math.sqrt(ratio)
        _sync_jax_state(self.model)
        optimizer.learning_rate = rate
        return rate
