"""One worker of a multi-worker test job; started by tests/test_multi_worker.py.

Usage: worker.py SCENARIO. The launcher (TF_CONFIG, KERAS_DISTRIBUTION_*,
horovodrun) sets the environment; `keras_fastrain.distribute.init()` finds
the engine from it. The worker prints one JSON line of results, prefixed
with RESULT, for the test to compare across workers.
"""

import json
import os
import sys

import numpy as np

from keras_fastrain import distribute

engine = distribute.init()  # before TensorFlow or JAX run anything else

import keras  # noqa: E402

from keras_fastrain import (  # noqa: E402
    DistributedOptimizer,
    FastSequential,
    _keras_internals,
    load_digits,
)
from keras_fastrain.batching import BatchSizeFinder, ResizableDataset  # noqa: E402
from keras_fastrain.callbacks import (  # noqa: E402
    AdaptiveBatchSize,
    BroadcastGlobalVariablesCallback,
    EarlyStopping,
    LearningRateWarmupCallback,
    MeasuredEMA,
    MetricAverageCallback,
)
from keras_fastrain.devices import host_array  # noqa: E402
from keras_fastrain.distribute import consensus  # noqa: E402
from keras_fastrain.pruning import ConstantSparsity  # noqa: E402

SCENARIO = sys.argv[1]
RANK = engine.rank


def report(**results):
    print("RESULT " + json.dumps({"rank": RANK, "engine": engine.name, **results}), flush=True)


def layers():
    return [
        keras.Input((8, 8)),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]


def checksum(model):
    return float(
        sum(np.abs(np.asarray(keras.ops.convert_to_numpy(w))).sum() for w in weights(model))
    )


def weights(model):
    _keras_internals.sync_jax_state(model)
    # host_array reads a JAX array spread over processes, and a scalar
    # MirroredVariable under MultiWorkerMirroredStrategy, which numpy cannot.
    return [host_array(variable) for variable in model.weights]


def collectives():
    logs = {"loss": float(RANK), "accuracy": 2.0 * RANK}
    MetricAverageCallback().on_epoch_end(0, logs)
    engine.barrier()
    report(
        size=engine.size,
        local_rank=engine.local_rank,
        is_chief=engine.is_chief,
        mean=engine.allreduce(float(RANK), "mean"),
        sum=engine.allreduce(np.array([RANK, 1.0]), "sum").tolist(),
        max=engine.allreduce(RANK + 3, "max"),
        gathered=engine.allgather(np.array([RANK, 10 * RANK])).tolist(),
        broadcast=engine.broadcast(np.array([RANK + 5.0]), root_rank=1).tolist(),
        consensus_gather=consensus.gather({"rank": RANK, "text": "x" * (RANK + 1)}),
        any_worker=consensus.any_worker(RANK == 1),
        none_worker=consensus.any_worker(False),
        averaged_logs=logs,
    )


class RestoreOnOneWorker(keras.callbacks.Callback):
    """Stands for a restore that only some workers make: in `on_train_begin`,
    after the broadcast callback's own, worker 1 loads other weights."""

    def on_train_begin(self, logs=None):
        for variable in self.model.weights:
            variable.assign(variable.value + float(RANK))
        self.before = checksum(self.model)


def broadcast():
    """Weights that differ per worker, from before fit and from a restore in
    a later callback's on_train_begin, made equal by the callback."""
    with engine.scope():
        model = keras.Sequential(layers())
    for variable in model.weights:  # each worker moves its own copy apart
        variable.assign(variable.value * (1.0 + RANK))
    before = checksum(model)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    (x, y), _ = load_digits()
    restore = RestoreOnOneWorker()
    model.fit(
        x[:64],
        y[:64],
        batch_size=64,
        epochs=1,
        verbose=0,
        callbacks=[BroadcastGlobalVariablesCallback(0), restore],
    )
    report(before=before, restored=restore.before, after=checksum(model))


class LearningRates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def fit():
    """FastModel from the environment: same weights everywhere, loss falls,
    EarlyStopping stops every worker at the epoch one of them asks for."""
    if engine.name != "jax_multi_process":
        # Different starts, which the engine must unify. (Under JAX
        # multi-process, variables are created as one global array, which
        # Keras refuses from unequal values; the engine gives every process
        # rank 0's seed instead.)
        keras.utils.set_random_seed(RANK)
    # Pruned too: the masks must come out the same on every worker.
    model = FastSequential(layers(), pruning=ConstantSparsity(0.5, begin_step=0, frequency=4))
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    (x, y), _ = load_digits()
    x, y = x[:1024], y[:1024]
    # Worker 1 asks to stop at the end of epoch 1 (no 10-point improvement
    # after its first epoch); worker 0 never would on its own.
    if RANK == 1:
        stopper = EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    else:
        stopper = EarlyStopping(monitor="loss", patience=100)
    rates = LearningRates()
    warmup = LearningRateWarmupCallback(initial_lr=0.1, warmup_epochs=2, verbose=0)
    history = model.fit(
        x,
        y,
        batch_size=64,
        validation_data=(x[:200], y[:200]),
        epochs=6,
        verbose=0,
        callbacks=[warmup, rates, stopper],
    )
    report(
        losses=history.history["loss"],
        val_losses=history.history["val_loss"],
        epochs=len(history.history["loss"]),
        checksum=checksum(model),  # weights and masks
        masks=[
            float(value.sum())
            for value, variable in zip(weights(model), model.weights, strict=True)
            if "mask" in variable.path
        ],
        rates=rates.rates,
        evaluation=model.evaluate(x, y, batch_size=64, verbose=0),
        engine_described=model.choices["distribute"].value,
    )


def measured_ema():
    """MeasuredEMA with each worker validating on different rows: the
    scores it decides on are averaged over the workers, so all decide alike."""
    model = FastSequential(layers())
    model.compile(
        keras.optimizers.SGD(0.2, use_ema=True, ema_momentum=0.8),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    (x, y), (x_test, y_test) = load_digits()
    rows = slice(150 * RANK, 150 * RANK + 150)  # each worker's own validation rows
    measured = MeasuredEMA(verbose=0)
    model.fit(
        x[:1024],
        y[:1024],
        batch_size=64,
        validation_data=(x_test[rows], y_test[rows]),
        epochs=2,
        verbose=0,
        callbacks=[measured],
    )
    report(kept=measured.kept, scores=measured.scores, checksum=checksum(model))


def plain():
    """Horovod-style code on a plain keras.Model: DistributedOptimizer (with
    accumulation, and fp16 compression on Horovod), the broadcast and
    metric-averaging callbacks, and data sharded by hand where each worker
    feeds its own share."""
    # Keras's gradient accumulation cannot run under tf.distribute: a clear error there.
    accumulation = 1 if engine.name == "multi_worker" else 2
    refused = None
    if engine.name == "multi_worker":
        try:
            DistributedOptimizer(keras.optimizers.SGD(), backward_passes_per_step=2)
        except ValueError as error:
            refused = str(error)
    with engine.scope():
        model = keras.Sequential(layers())
        optimizer = DistributedOptimizer(
            keras.optimizers.SGD(0.05 * engine.size, momentum=0.9),
            backward_passes_per_step=accumulation,
            average_aggregated_gradients=True,
            compression="fp16" if engine.name == "horovod" else "none",
        )
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    if engine.name == "horovod":  # each worker must start apart: the callback unifies them
        for variable in model.weights:
            variable.assign(variable.value * (1.0 + RANK))
    (x, y), _ = load_digits()
    x, y, batch = x[:1024], y[:1024], 64
    if not engine.feeds_global_batch():
        x, y, batch = x[RANK :: engine.size], y[RANK :: engine.size], batch // engine.size
    history = model.fit(
        x,
        y,
        batch_size=batch,
        epochs=3,
        verbose=0,
        callbacks=[MetricAverageCallback(), BroadcastGlobalVariablesCallback(0)],
    )
    report(
        losses=history.history["loss"],
        accuracy=history.history["accuracy"],
        checksum=checksum(model),
        accumulation=model.optimizer.gradient_accumulation_steps or 1,
        refused=refused,
    )


def horovod_example():
    """Horovod's Keras MNIST example, moved over by its import line: a
    Sequential without an Input built at the top level, each worker from its
    own seed, DistributedOptimizer, the broadcast and metric-averaging
    callbacks (or HorovodCallback), and checkpoints on rank 0 only.
    Argument: "plain", "fast" (FastSequential) or "one_callback"."""
    import tempfile

    import keras_fastrain.horovod as hvd

    hvd.init()
    if engine.name != "jax_multi_process":  # there a global array needs equal starts
        keras.utils.set_random_seed(hvd.rank())
    (x, y), _ = load_digits()
    model_class = FastSequential if sys.argv[2] == "fast" else keras.Sequential
    model = model_class(
        [
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    optimizer = hvd.DistributedOptimizer(keras.optimizers.Adam(0.001 * hvd.size()))
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    if sys.argv[2] == "one_callback":
        callbacks = [hvd.callbacks.HorovodCallback()]
    else:
        callbacks = [
            hvd.callbacks.BroadcastGlobalVariablesCallback(0),
            hvd.callbacks.MetricAverageCallback(),
        ]
    directory = tempfile.mkdtemp()
    if hvd.rank() == 0:
        path = os.path.join(directory, "checkpoint-{epoch}.keras")
        callbacks.append(keras.callbacks.ModelCheckpoint(path))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((x[:1024], y[:1024])).repeat()
        data = {"x": data.shuffle(1024, seed=hvd.rank()).batch(64)}
    else:  # each worker its own share, as Horovod's examples shard by rank
        data = {"x": x[hvd.rank() : 1024 : hvd.size()], "y": y[hvd.rank() : 1024 : hvd.size()]}
        data["batch_size"] = 64 // hvd.size()
    history = model.fit(
        **data, steps_per_epoch=16 // hvd.size(), epochs=3, verbose=0, callbacks=callbacks
    )
    report(
        losses=history.history["loss"],
        checksum=checksum(model),
        checkpoints=sorted(os.listdir(directory)),
        sizes=[hvd.size(), hvd.local_size(), hvd.local_rank(), hvd.is_initialized()],
        allreduce=hvd.allreduce(float(hvd.rank()), op=hvd.Sum),
        allgather=hvd.allgather(np.array([[hvd.rank()]])).tolist(),
        broadcast=hvd.broadcast(np.array(hvd.rank() + 1.0), root_rank=1).tolist(),
    )


class MoveOneWorker(keras.callbacks.Callback):
    """Changes worker 1's weights at the end of epoch 2, on that worker only."""

    def on_epoch_end(self, epoch, logs=None):
        if RANK == 1 and epoch == 1:
            variable = self.model.trainable_weights[0]
            variable.assign(variable.value + 1.0)


def diverge():
    """Workers whose weights fall apart are stopped, on every worker, with an
    error naming the likely causes."""
    keras.utils.set_random_seed(0)
    model = FastSequential(layers())
    model.compile("sgd", "sparse_categorical_crossentropy")
    (x, y), _ = load_digits()
    model.fit(x[:256], y[:256], batch_size=64, epochs=4, verbose=0, callbacks=[MoveOneWorker()])
    report(finished=True)


def steps_taken(model):
    return int(model.optimizer.iterations.numpy())


class ServedRows(ResizableDataset):
    """Records each pass's batches: (sum of the labels, batch size)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes = []

    def on_epoch_begin(self):
        self.passes.append([])
        super().on_epoch_begin()

    def _batch(self, index):
        batch = super()._batch(index)
        if self.passes:
            self.passes[-1].append((int(batch[1].sum()), len(batch[1])))
        return batch


class DigitBatches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return len(self.x) // self.batch_size

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[rows], self.y[rows]


def batch_size():
    """batch_size="auto" then AdaptiveBatchSize: the same batch everywhere."""
    keras.utils.set_random_seed(0)
    model = FastSequential(layers())
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    (x, y), _ = load_digits()
    x, y = x[:1024], y[:1024]
    finder = BatchSizeFinder(min_batch_size=32, max_batch_size=256, max_trials=4, steps_per_trial=2)
    iterations = []  # the optimizer's step count as each epoch begins and ends
    count_steps = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: iterations.append(steps_taken(model)),
        on_epoch_end=lambda epoch, logs: iterations.append(steps_taken(model)),
    )
    callbacks = [AdaptiveBatchSize(schedule={1: 2, 2: 2}), count_steps]
    history = model.fit(x, y, batch_size=finder, epochs=3, verbose=0, callbacks=callbacks)
    steps = np.diff(iterations)[::2].tolist()
    search = model.batch_size_search
    # A PyDataset of 512 rows in batches of 32 (global on a tf.distribute
    # strategy, each worker's own elsewhere) grows by whole batches.
    digits = DigitBatches(x[:512], y[:512], 32)
    iterations.clear()
    grouped = model.fit(
        digits, epochs=2, verbose=0, callbacks=[AdaptiveBatchSize(schedule={1: 2}), count_steps]
    )
    grouped_steps = np.diff(iterations)[::2].tolist()
    # A ResizableDataset of the user's: on a tf.distribute strategy it holds
    # the global data, so every worker must read the same rows in the same
    # order, in passes of the grown batch size.
    served = ServedRows(x[:256], y[:256], batch_size=32, seed=7)
    model.fit(served, epochs=3, verbose=0, callbacks=[AdaptiveBatchSize(schedule={1: 2, 2: 2})])
    by_noise = AdaptiveBatchSize(noise_scale=True, probes=2, max_batch_size=256)
    noise = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[by_noise]).history
    report(
        noise_scales=noise.get("noise_scale"),
        noise_batch_sizes=noise.get("batch_size"),
        chosen=search.batch_size,
        largest=search.max_batch_size,
        trials=[t.batch_size for t in search.trials],
        batch_sizes=history.history.get("batch_size"),
        steps=steps,
        grouped_batch_sizes=grouped.history["batch_size"],
        grouped_steps=grouped_steps,
        served=served.passes,
        losses=history.history["loss"],
        checksum=checksum(model),
    )


def die():
    """Worker 1 dies in the middle of training; worker 0 must fail, not hang."""
    keras.utils.set_random_seed(0)
    model = FastSequential(layers())
    model.compile("sgd", "sparse_categorical_crossentropy")
    (x, y), _ = load_digits()

    class Die(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if RANK == 1 and epoch == 2:
                os._exit(3)

    model.fit(x[:1024], y[:1024], batch_size=64, epochs=50, verbose=0, callbacks=[Die()])
    report(finished=True)


{
    "collectives": collectives,
    "broadcast": broadcast,
    "fit": fit,
    "plain": plain,
    "die": die,
    "horovod_example": horovod_example,
    "diverge": diverge,
    "batch_size": batch_size,
    "measured_ema": measured_ema,
}[SCENARIO]()
