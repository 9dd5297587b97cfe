"""Where training runs: one device, several in step, or several workers.

`resolve_engine(distribute)` turns FastModel's `distribute=` option into an
`Engine`; `init()` joins the multi-worker job a launcher started; `current()`
is the process's engine, which callbacks ask for rank, size and collectives.
This module only gathers the public names; the parts live one per module:
- `resolve.py`: the choice of engine, and the process's engine;
- `engine.py`: the interface and the one-process engine;
- `tf_strategy.py`: any `tf.distribute.Strategy` (MirroredStrategy locally;
  TPUStrategy when a user passes one);
- `tf_multi_worker.py`: MultiWorkerMirroredStrategy over TF_CONFIG workers;
- `jax_data_parallel.py`: `keras.distribution.DataParallel` on JAX;
- `jax_multi_process.py`: the same over several JAX processes;
- `horovod.py`: Horovod's core TensorFlow operations, and the
  `Distributed<Optimizer>` classes that average gradients through them;
- `optimizer.py`: `DistributedOptimizer`, for every engine;
- `sharding.py`: each worker's share of the data;
- `local_launch.py`: a multi-worker job started on this host.
"""

from keras_fastrain.distribute.engine import Engine
from keras_fastrain.distribute.optimizer import DistributedOptimizer
from keras_fastrain.distribute.resolve import (
    ENGINE_NAMES,
    MULTI_WORKER_ENGINES,
    SINGLE_PROCESS_ENGINES,
    check_distribute,
    current,
    init,
    launch_from_environment,
    resolve_engine,
)

__all__ = [
    "ENGINE_NAMES",
    "MULTI_WORKER_ENGINES",
    "SINGLE_PROCESS_ENGINES",
    "DistributedOptimizer",
    "Engine",
    "check_distribute",
    "current",
    "init",
    "launch_from_environment",
    "resolve_engine",
]
