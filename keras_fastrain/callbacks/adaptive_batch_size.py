"""`AdaptiveBatchSize`: grow the batch during `fit` on a schedule.

Smith et al. (2018, "Don't Decay the Learning Rate, Increase the Batch
Size") and AdaBatch grow the batch at given epochs: early epochs take many
small, noisy steps; later ones take fewer, larger, faster steps. The batch
changes between epochs in a `keras_fastrain.batching.ResizableDataset`;
`fit` is told the new number of steps, so its progress bar and the epoch's
end stay right. The learning rate follows a named rule at every change.

Batch sizes here are global: with workers that each feed their own share
(Horovod, JAX multi-process) every worker's dataset serves
`batch_size / workers`. The schedule depends only on the epoch, so every
worker changes at the same epoch to the same size.
"""

import math

import keras

from keras_fastrain import _keras_internals, distribute
from keras_fastrain.batching.resizable import ResizableDataset
from keras_fastrain.callbacks.distributed import _sync_jax_state
from keras_fastrain.devices import host_array
from keras_fastrain.scaling import SCALING_RULES
from keras_fastrain.validation import check_choice, check_int

NEEDS_RESIZABLE = (
    "AdaptiveBatchSize changes the batch size between epochs, and Keras fixes the "
    "batch size of arrays when fit starts. Train a keras_fastrain.FastModel (it "
    "wraps arrays itself), or wrap them: data = ResizableDataset(x, y, batch_size=64), "
    "then model.fit(data, callbacks=[AdaptiveBatchSize(data, schedule={...})])."
)


class AdaptiveBatchSize(keras.callbacks.Callback):
    """Multiplies the batch size at given epochs and scales the learning rate.

    Args:
        data: The `ResizableDataset` that `fit` trains on, or `None` when a
            `FastModel` trains on arrays (it wraps them and fills this in).
        schedule: Dict `{epoch: factor}`: at the start of `epoch` (0-based)
            the batch size is multiplied by the integer `factor` >= 1.
        max_batch_size: Integer or `None`. The (global) batch never grows
            past it. `None`: no bound, or, when `FastModel.fit` searched
            the batch size (`batch_size="auto"`), the largest batch that
            search found to fit.
        learning_rate_rule: `"linear"`, `"sqrt"` or `None`: at every change
            by a ratio `r` the learning rate is multiplied by `r`,
            `sqrt(r)` or 1 (Smith et al.'s recipe keeps it). Defaults to
            `"sqrt"`.
        verbose: Integer. 1 prints every change.

    Attributes:
        changes: List of `(epoch, batch_size, learning_rate)`, one per
            change, with the global batch size.
        batch_size: Integer. The global batch size in use.

    Every epoch's logs (so `History`) get `batch_size`.

    Example:

    ```python
    model.fit(x, y, batch_size=64, epochs=8,
              callbacks=[AdaptiveBatchSize(schedule={2: 2, 4: 2, 6: 2})])
    ```
    """

    def __init__(
        self, data=None, schedule=None, max_batch_size=None, learning_rate_rule="sqrt", verbose=0
    ):
        super().__init__()
        if data is not None and not isinstance(data, ResizableDataset):
            raise TypeError(
                "Invalid value for argument `data`. Received: data of type "
                f"{type(data).__name__}. Expected a keras_fastrain.batching."
                f"ResizableDataset or None. {NEEDS_RESIZABLE}"
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
        if max_batch_size is not None:
            max_batch_size = check_int("max_batch_size", max_batch_size, minimum=1)
        self.max_batch_size = max_batch_size
        self.learning_rate_rule = check_choice(
            "learning_rate_rule", learning_rate_rule, SCALING_RULES
        )
        self.verbose = check_int("verbose", verbose, minimum=0)
        self.changes = []
        self._searched_max = None  # set by FastModel.fit after a search
        self._feeders = 1

    @property
    def batch_size(self):
        return None if self.data is None else self.data.batch_size * self._feeders

    def on_train_begin(self, logs=None):
        if self.data is None:
            raise TypeError(f"AdaptiveBatchSize has no data to resize. {NEEDS_RESIZABLE}")
        engine = distribute.current()
        self._feeders = 1 if engine.feeds_global_batch() else engine.size
        if self.learning_rate_rule is not None:
            optimizer = self.model.optimizer
            config = getattr(optimizer, "inner_optimizer", optimizer).get_config()
            if isinstance(config.get("learning_rate"), dict):  # a serialized schedule
                raise ValueError(
                    "AdaptiveBatchSize scales the learning rate, and this optimizer takes "
                    "it from a LearningRateSchedule: give the optimizer a fixed rate, or "
                    "pass learning_rate_rule=None."
                )

    def on_epoch_begin(self, epoch, logs=None):
        old = self.batch_size
        new = old * self.schedule.get(epoch, 1)
        limit = self.max_batch_size or self._searched_max
        if limit is not None:
            step = self.data.multiple_of * self._feeders
            new = max(min(new, limit) // step * step, old)
        if new == old:
            return
        self.data.batch_size = new // self._feeders
        _keras_internals.set_running_fit_steps(self.data.num_batches)
        rate = self._scale_learning_rate(new / old)
        self.changes.append((epoch, new, rate))
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: batch size {old} -> {new}, learning rate {rate:.3g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["batch_size"] = self.batch_size

    def _scale_learning_rate(self, ratio):
        optimizer = self.model.optimizer
        rate = float(host_array(optimizer.learning_rate))
        if self.learning_rate_rule is None:
            return rate
        rate *= ratio if self.learning_rate_rule == "linear" else math.sqrt(ratio)
        _sync_jax_state(self.model)
        optimizer.learning_rate = rate
        return rate
