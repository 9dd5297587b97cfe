"""`horovod.tensorflow.keras`'s names on Keras 3 and every engine.

A Horovod Keras script moves over by one line:

```python
import keras_fastrain.horovod as hvd  # was: import horovod.tensorflow.keras as hvd
```

`hvd.init()` joins the job its launcher started (`horovodrun`, TF_CONFIG
workers, JAX processes; see `keras_fastrain.distribute.init`), and every name
below keeps Horovod's arguments and return types: ranks and sizes are
integers, the collectives take numbers or arrays and return numpy values,
`DistributedOptimizer` takes Horovod's arguments, and `hvd.callbacks` holds
its callbacks plus `HorovodCallback` and `LearningRateScheduleCallback`.
Where an argument cannot be honoured, a value other than Horovod's default
is a clear error; placement and naming hints that Keras 3 makes moot
(`device_dense`, `device_sparse`, `sparse_as_dense`, the collectives'
`name`) are accepted and unused. As with Horovod, the ranks and sizes need
`init()` first when a launcher started the script. The differences are
listed in the documentation's compatibility table.

Example:

```python
import keras
import keras_fastrain.horovod as hvd

hvd.init()
model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
model.compile(hvd.DistributedOptimizer(keras.optimizers.Adam(0.001 * hvd.size())),
              "sparse_categorical_crossentropy")
model.fit(x, y, callbacks=[hvd.callbacks.BroadcastGlobalVariablesCallback(0),
                           hvd.callbacks.MetricAverageCallback()])
```
"""

import numpy as np

from keras_fastrain.distribute import resolve
from keras_fastrain.distribute.optimizer import DistributedOptimizer as _distributed_optimizer
from keras_fastrain.horovod import callbacks
from keras_fastrain.validation import check_choice

__all__ = [
    "Average",
    "Compression",
    "DistributedOptimizer",
    "Max",
    "Sum",
    "allgather",
    "allreduce",
    "broadcast",
    "callbacks",
    "init",
    "is_initialized",
    "local_rank",
    "local_size",
    "rank",
    "size",
]

# Horovod's reduction operations, as the engines' names for them.
Average = "mean"
Sum = "sum"
Max = "max"
_OPS = (Average, Sum, Max)

_initialized = False


class Compression:
    """How gradients travel: `Compression.none` or `Compression.fp16`
    (float16 on the wire, Horovod engine only).

    Example:

    ```python
    sgd = keras.optimizers.SGD(0.01)
    optimizer = hvd.DistributedOptimizer(sgd, compression=hvd.Compression.fp16)
    ```
    """

    none = "none"
    fp16 = "fp16"


def init():
    """Joins this process to its multi-worker job; Horovod's `hvd.init()`.

    Call it first in the script: it starts the engine the launcher's
    environment names (`keras_fastrain.distribute.init()`), or leaves one
    process, rank 0 of 1, when there is none.

    Example:

    ```python
    import keras_fastrain.horovod as hvd

    hvd.init()
    print(f"worker {hvd.rank()} of {hvd.size()}")
    ```
    """
    global _initialized
    resolve.init()
    _initialized = True


def is_initialized():
    """Whether `init()` was called in this process.

    Example:

    ```python
    if not hvd.is_initialized():
        hvd.init()
    ```
    """
    return _initialized


def _engine():
    """The process's engine; as Horovod, an error before `init()` in a
    launched job (the script would train alone on every worker)."""
    if not _initialized and resolve.launch_from_environment() is not None:
        raise ValueError("Horovod has not been initialized; use hvd.init().")
    return resolve.current()


def size():
    """The number of workers, as an integer.

    Example:

    ```python
    optimizer = keras.optimizers.Adam(0.001 * hvd.size())
    ```
    """
    return _engine().size


def rank():
    """This worker's index, 0 to `size() - 1`.

    Example:

    ```python
    if hvd.rank() == 0:
        callbacks.append(keras.callbacks.ModelCheckpoint("checkpoint-{epoch}.keras"))
    ```
    """
    return _engine().rank


def local_rank():
    """This worker's index among the workers on its own host.

    Example:

    ```python
    gpus = tf.config.list_physical_devices("GPU")
    tf.config.set_visible_devices(gpus[hvd.local_rank()], "GPU")
    ```
    """
    return _engine().local_rank


def local_size():
    """The number of workers on this worker's host.

    Example:

    ```python
    threads = os.cpu_count() // hvd.local_size()
    ```
    """
    return _engine().local_size


def allreduce(value, name=None, average=None, op=None):
    """`value` reduced over the workers (the mean by default), as numpy.

    Args:
        value: A number, array or tensor, of one shape on every worker.
        name: String or `None`. The name of Horovod's operation; unused.
        average: Bool or `None`. Horovod's older spelling: `False` sums.
        op: `Average`, `Sum` or `Max`, or `None` for `Average`.

    Returns:
        A numpy value (a Python number for a Python number).

    Example:

    ```python
    mean_loss = hvd.allreduce(loss)
    samples = hvd.allreduce(len(x), op=hvd.Sum)
    ```
    """
    del name
    if average is not None and op is not None:
        raise ValueError(
            f"Received average={average!r} and op={op!r}: pass one of them, not both (as Horovod)."
        )
    if op is None:
        op = Average if average is None or average else Sum
    check_choice("op", op, _OPS)
    return _engine().allreduce(value, op)


def allgather(value, name=None):
    """Every worker's `value` concatenated along the first axis, in rank
    order, as numpy. Unlike Horovod, the first axis must have the same
    length on every worker.

    Args:
        value: An array or tensor of one shape on every worker.
        name: String or `None`. The name of Horovod's operation; unused.

    Example:

    ```python
    predictions = hvd.allgather(model.predict(x_share))  # every worker's rows
    ```
    """
    del name
    engine = _engine()
    shape = np.shape(value)
    shapes = engine.allgather(np.asarray([len(shape), *shape], np.int64)) if shape else None
    if shapes is not None and not (shapes == shapes[0]).all():
        raise ValueError(
            f"Invalid value for argument `value`: hvd.allgather here needs one shape on "
            f"every worker, and the workers' shapes are {[tuple(s[1:]) for s in shapes]}."
        )
    gathered = engine.allgather(value)
    return np.concatenate(list(gathered)) if gathered.ndim > 1 else gathered


def broadcast(value, root_rank, name=None):
    """`root_rank`'s `value` on every worker, as numpy.

    Args:
        value: A number, array or tensor, of one shape on every worker.
        root_rank: Integer. The worker whose value every worker takes.
        name: String or `None`. The name of Horovod's operation; unused.

    Example:

    ```python
    seed = int(hvd.broadcast(np.random.randint(2**31), root_rank=0))
    ```
    """
    del name
    return _engine().broadcast(value, root_rank)


def DistributedOptimizer(
    optimizer,
    name=None,
    device_dense="",
    device_sparse="",
    compression=Compression.none,
    sparse_as_dense=False,
    gradient_predivide_factor=1.0,
    op=Average,
    backward_passes_per_step=1,
    average_aggregated_gradients=False,
):
    """Horovod's `DistributedOptimizer`, with its arguments in its order.

    See `keras_fastrain.DistributedOptimizer` for what it does on each
    engine.

    Args:
        optimizer: A `keras.optimizers.Optimizer`, not yet built.
        name: String or `None`. A name for the returned optimizer.
        device_dense: String. Horovod's placement hint; Keras 3 exchanges
            gradients on the device they were computed on, so it is unused.
        device_sparse: String. As `device_dense`.
        compression: `Compression.none` or `Compression.fp16`.
        sparse_as_dense: Bool. Horovod's format hint; gradients are
            exchanged dense here, so it is unused.
        gradient_predivide_factor: Number. Only 1.0 (Horovod's default).
        op: Only `Average` (Horovod's default).
        backward_passes_per_step: Integer >= 1. Batches whose gradients are
            aggregated before one update.
        average_aggregated_gradients: Bool. See
            `keras_fastrain.DistributedOptimizer`.

    Example:

    ```python
    optimizer = hvd.DistributedOptimizer(keras.optimizers.Adam(0.001 * hvd.size()))
    model.compile(optimizer, "sparse_categorical_crossentropy")
    ```
    """
    del device_dense, device_sparse, sparse_as_dense
    if gradient_predivide_factor != 1.0:
        raise ValueError(
            "Invalid value for argument `gradient_predivide_factor`. Received: "
            f"gradient_predivide_factor={gradient_predivide_factor!r}. Expected 1.0: "
            "keras-fastrain averages gradients in one step."
        )
    check_choice("op", op, (Average,))
    return _distributed_optimizer(
        optimizer,
        backward_passes_per_step=backward_passes_per_step,
        compression=compression,
        name=name,
        average_aggregated_gradients=average_aggregated_gradients,
    )
