"""Horovod's Keras callbacks, for Keras 3 and every engine.

`horovod.tensorflow.keras` fails on Keras 3 (horovod#4290). These callbacks
keep its names, arguments and meaning and work through whichever engine the
process runs (`keras_fastrain.distribute.current()`): Horovod,
MultiWorkerMirroredStrategy, JAX multi-process, or a single process, where
they change nothing.
"""

import math

import keras

from keras_fastrain import _keras_internals, distribute
from keras_fastrain.callbacks.agreement import check_agreement
from keras_fastrain.callbacks.learning_rate import change_rate, current_rate
from keras_fastrain.validation import check_float, check_int

__all__ = [
    "BroadcastGlobalVariablesCallback",
    "HorovodCallback",
    "LearningRateWarmupCallback",
    "MetricAverageCallback",
]


class BroadcastGlobalVariablesCallback(keras.callbacks.Callback):
    """Starts every worker from `root_rank`'s model and optimizer state.

    Broadcasts right before the first step, after every `on_train_begin`
    (so also after `BackupAndRestore` restored a checkpoint on one worker),
    and again at the start of every later `fit`. A model that creates its
    variables in its first step (a `Sequential` without an `Input`, on
    Horovod) has nothing to send then: the broadcast runs after that first
    step instead, as Horovod's callback does. After the first step that
    follows a broadcast, it checks that the workers' weights agree (see
    `keras_fastrain.callbacks.agreement`), so gradients that were not
    averaged are an error, not a silently different model per worker.

    A `FastModel` on Horovod adds it to `fit` by itself.

    Args:
        root_rank: Integer >= 0, below the number of workers. The worker
            whose values every worker takes. Defaults to 0.

    Example:

    ```python
    keras_fastrain.distribute.init()  # at the top of the script
    ...
    model.fit(x, y, callbacks=[keras_fastrain.callbacks.BroadcastGlobalVariablesCallback(0)])
    ```
    """

    def __init__(self, root_rank=0):
        super().__init__()
        self.root_rank = check_int("root_rank", root_rank, minimum=0)
        self._stage = None

    def on_train_begin(self, logs=None):
        engine = distribute.current()
        check_int("root_rank", self.root_rank, minimum=0, maximum=engine.size - 1)
        engine.before_fit()
        # "before": broadcast before the first step; "after": after it (the
        # model had no variables yet); "check": compare after the next step.
        self._stage = "before" if engine.size > 1 else None

    def on_train_batch_begin(self, batch, logs=None):
        if self._stage != "before":
            return
        if self.model.built and self.model.trainable_weights:
            self._broadcast()
            self._stage = "check"
        else:
            self._stage = "after"

    def on_train_batch_end(self, batch, logs=None):
        if self._stage == "after":
            self._broadcast()
            self._stage = "check"
        elif self._stage == "check":
            self._stage = None
            _keras_internals.sync_jax_state(self.model)
            check_agreement(self.model, "after the first step that followed the broadcast")

    def _broadcast(self):
        _keras_internals.sync_jax_state(self.model)
        optimizer = getattr(self.model, "optimizer", None)
        variables = list(self.model.variables)
        if optimizer is not None:
            variables += list(optimizer.variables)
        distribute.current().broadcast_variables(variables, root_rank=self.root_rank)


class MetricAverageCallback(keras.callbacks.Callback):
    """Replaces each epoch's metrics by their mean over the workers.

    Put it first in `callbacks`, so that the callbacks after it (History,
    EarlyStopping, checkpoints) read the averages. Keys are reduced in sorted
    order, the same on every worker. Each epoch it also checks that the
    workers' weights agree (see `keras_fastrain.callbacks.agreement`). In a
    single process it changes nothing.
    A `FastModel` puts it first by itself on Horovod.

    Example:

    ```python
    model.fit(
        x,
        y,
        validation_split=0.1,
        callbacks=[
            keras_fastrain.callbacks.MetricAverageCallback(),  # first
            keras_fastrain.callbacks.EarlyStopping(monitor="val_loss", patience=3),
        ],
    )
    ```
    """

    def on_train_begin(self, logs=None):
        distribute.current().before_fit()

    def on_epoch_end(self, epoch, logs=None):
        engine = distribute.current()
        if engine.size == 1:
            return
        for key in sorted(logs or {}):
            value = logs[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                logs[key] = float(engine.allreduce(float(value), "mean"))
        if self.model is not None:
            check_agreement(self.model, f"at the end of epoch {epoch + 1}", engine)


class HorovodCallback(keras.callbacks.Callback):
    """The two callbacks every Horovod script adds, as one.

    It does what `BroadcastGlobalVariablesCallback(root_rank)` and
    `MetricAverageCallback()` do together: every worker starts from
    `root_rank`'s weights (after the first step if the model builds in it),
    each epoch's metrics become their mean over the workers, and the
    workers' weights are checked to agree. Put it first in `callbacks`, so
    that the callbacks after it read the averaged metrics.

    Args:
        root_rank: Integer >= 0, below the number of workers. The worker
            whose values every worker takes. Defaults to 0.

    Example:

    ```python
    import keras_fastrain.horovod as hvd

    hvd.init()
    model.fit(x, y, callbacks=[hvd.callbacks.HorovodCallback(), keras.callbacks.EarlyStopping()])
    ```
    """

    def __init__(self, root_rank=0):
        super().__init__()
        self.broadcast = BroadcastGlobalVariablesCallback(root_rank)
        self.average = MetricAverageCallback()
        self.root_rank = self.broadcast.root_rank

    def set_model(self, model):
        super().set_model(model)
        self.broadcast.set_model(model)
        self.average.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.broadcast.set_params(params)
        self.average.set_params(params)

    def on_train_begin(self, logs=None):
        self.broadcast.on_train_begin(logs)
        self.average.on_train_begin(logs)

    def on_train_batch_begin(self, batch, logs=None):
        self.broadcast.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.broadcast.on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.average.on_epoch_end(epoch, logs)


class LearningRateWarmupCallback(keras.callbacks.Callback):
    """Linear learning-rate warm-up for large global batches (Goyal et al. 2017).

    Over the first `warmup_epochs` epochs the learning rate rises, every
    batch, from `initial_lr / size` to `initial_lr`, where `size` is the
    number of workers: give `initial_lr` as the single-worker rate times
    `size`, as with Horovod's callback of this name. With
    `momentum_correction`, an SGD optimizer's momentum buffer is rescaled by
    the ratio of the new rate to the old at every change (Goyal et al.'s
    correction; Horovod scales the momentum coefficient for one step
    instead, which Keras 3 compiles in as a constant).

    Args:
        initial_lr: Float > 0. The rate at the end of the warm-up.
        warmup_epochs: Number >= 0. How many epochs the warm-up lasts.
            Defaults to 5.
        momentum_correction: Bool. Whether to rescale the momentum buffer
            at every change of the rate. Defaults to True.
        steps_per_epoch: Integer >= 1 or `None`. Batches per epoch. Defaults
            to what `fit` says (it must know it, or pass this).
        verbose: Integer >= 0. 1 prints the rate when the warm-up ends.
            Defaults to 0.

    Example:

    ```python
    engine = keras_fastrain.distribute.init()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    warmup = keras_fastrain.callbacks.LearningRateWarmupCallback(
        initial_lr=0.05 * engine.size, warmup_epochs=2
    )
    model.fit(x, y, batch_size=64, epochs=10, callbacks=[warmup])
    ```
    """

    def __init__(
        self,
        initial_lr,
        warmup_epochs=5,
        momentum_correction=True,
        steps_per_epoch=None,
        verbose=0,
    ):
        super().__init__()
        self.initial_lr = check_float("initial_lr", initial_lr, low=0.0, closed=(False, True))
        self.warmup_epochs = check_float("warmup_epochs", warmup_epochs, low=0.0)
        if not isinstance(momentum_correction, bool):
            raise TypeError(
                "Invalid value for argument `momentum_correction`. Received: "
                f"momentum_correction={momentum_correction!r}. Expected a bool."
            )
        self.momentum_correction = momentum_correction
        self.steps_per_epoch = (
            None if steps_per_epoch is None else check_int("steps_per_epoch", steps_per_epoch, 1)
        )
        self.verbose = check_int("verbose", verbose, minimum=0)
        self._epoch = 0
        self._steps = None

    def learning_rate_at(self, epoch):
        """The warm-up's rate at a (fractional) `epoch`, for `size` workers."""
        size = distribute.current().size
        progress = min(epoch / self.warmup_epochs, 1.0) if self.warmup_epochs else 1.0
        return self.initial_lr / size * (progress * (size - 1) + 1)

    def on_train_begin(self, logs=None):
        self._steps = self.steps_per_epoch or (self.params or {}).get("steps")
        if self._steps is None and self.warmup_epochs:
            raise ValueError(
                "LearningRateWarmupCallback needs the number of steps per epoch: fit "
                "does not know it for this data, so pass steps_per_epoch."
            )
        self._rate = current_rate(self.model, "LearningRateWarmupCallback")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch > self.warmup_epochs:
            return
        # No steps known only without a warm-up: then the fraction is moot.
        fraction = batch / self._steps if self._steps else 0.0
        rate = self.learning_rate_at(self._epoch + fraction)
        if rate == self._rate:
            return
        change_rate(self.model, rate, self.momentum_correction)
        self._rate = rate

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose and self.warmup_epochs and epoch + 1 == math.ceil(self.warmup_epochs):
            print(f"\nEpoch {epoch + 1}: finished the learning-rate warm-up at {self.initial_lr}.")
