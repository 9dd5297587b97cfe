"""JAX multi-process data parallel as an engine: one process per host (or per
worker), `keras.distribution.DataParallel` over every process's devices."""

import os

import keras
import numpy as np

from keras_fastrain import _keras_internals
from keras_fastrain.distribute.jax_data_parallel import JaxDataParallelEngine
from keras_fastrain.validation import check_int

__all__ = ["jax_process_count", "JaxMultiProcessEngine"]

# Keras's launcher convention (keras.distribution.initialize) and JAX's own.
KERAS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
JAX_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def jax_process_count(environ=None):
    """The number of processes a JAX multi-process launch asks for (1 if none)."""
    environ = os.environ if environ is None else environ
    for name in ("KERAS_DISTRIBUTION_NUM_PROCESSES", "JAX_NUM_PROCESSES"):
        if environ.get(name):
            return int(environ[name])
    return 1


def _launch_settings(environ):
    """(coordinator address, number of processes, this process's id)."""
    for address, count, index in (KERAS_VARIABLES, JAX_VARIABLES):
        if environ.get(count):
            missing = [name for name in (address, index) if not environ.get(name)]
            if missing:
                raise RuntimeError(
                    f"{count}={environ[count]} starts a JAX multi-process job, which also "
                    f"needs {' and '.join(missing)} (the coordinator's host:port, this "
                    "process's index)."
                )
            coordinator = environ[address].split(",")[0]
            return coordinator, int(environ[count]), int(environ[index])
    raise RuntimeError("No JAX multi-process launch found in the environment.")


class JaxMultiProcessEngine(JaxDataParallelEngine):
    """Trains in step over several JAX processes.

    Starts JAX's distributed runtime from the launch variables (Keras's
    `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `..._NUM_PROCESSES`,
    `..._PROCESS_ID`, or JAX's `JAX_COORDINATOR_ADDRESS`,
    `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`), with Gloo collectives on CPU, and
    sets a `DataParallel` distribution over every process's devices. All
    processes get rank 0's random seed, so that they create equal initial
    weights (JAX requires it). Each process feeds its own share of every
    batch (`feeds_global_batch()` is False): FastModel shards array inputs
    itself; with a plain model, shard the data by `rank`.

    Args:
        heartbeat_timeout_seconds: Integer. How long the processes wait for a
            silent one before they fail (a worker that died).
        reason: String. Why this engine was chosen.
    """

    name = "jax_multi_process"

    def __init__(self, heartbeat_timeout_seconds=30, reason="given"):
        check_int("heartbeat_timeout_seconds", heartbeat_timeout_seconds, minimum=1)
        import jax

        if not jax.distributed.is_initialized():  # else the user started it already
            coordinator, count, index = _launch_settings(os.environ)
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize(
                coordinator,
                num_processes=count,
                process_id=index,
                heartbeat_timeout_seconds=heartbeat_timeout_seconds,
            )
        distribution = keras.distribution.DataParallel(
            devices=jax.devices(), auto_shard_dataset=False
        )
        super().__init__(distribution, reason)
        keras.distribution.set_distribution(distribution)
        seed = self.broadcast(np.random.SeedSequence().generate_state(1)[0] >> 1)
        keras.utils.set_random_seed(int(seed))
        hosts = self.allgather(np.frombuffer(os.uname().nodename.encode()[:64].ljust(64), "u1"))
        same_host = [bool(np.array_equal(h, hosts[self.rank])) for h in hosts]
        self._local_rank = sum(same_host[: self.rank])
        self._local_size = sum(same_host)
        self.before_fit()

    @property
    def rank(self):
        import jax

        return jax.process_index()

    @property
    def size(self):
        import jax

        return jax.process_count()

    @property
    def local_rank(self):
        return self._local_rank

    @property
    def local_size(self):
        return self._local_size

    def feeds_global_batch(self):
        return False

    def describe(self):
        return (
            f"DataParallel over {self.size} JAX processes, worker {self.rank} "
            f"({self.num_replicas} devices)"
        )

    def check_batches(self, num_samples, batch_size):
        """Per process, every batch must split over its local devices."""
        import jax

        local = jax.local_device_count()
        last = num_samples % batch_size
        if batch_size % local or last % local:
            raise ValueError(
                f"Each JAX process splits its batches over {local} local devices; "
                f"{num_samples} samples in batches of {batch_size} do not split evenly."
            )

    def adopt(self, model, variables):
        del model
        mesh = self.distribution.device_mesh

        # Every process must place the same value: rank 0's.
        def rank_zeros(variable):
            return self._broadcast(np.asarray(keras.ops.convert_to_numpy(variable.value)), 0)

        return sum(
            _keras_internals.relayout_jax_variable(v, mesh, make_value=rank_zeros)
            for v in variables
        )

    def _allgather(self, array):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array))

    def _broadcast(self, array, root_rank):
        from jax.experimental import multihost_utils

        if root_rank == 0:
            return np.asarray(multihost_utils.broadcast_one_to_all(array, is_source=self.rank == 0))
        return self._allgather(array)[root_rank]
