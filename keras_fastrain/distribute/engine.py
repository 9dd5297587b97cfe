"""What every distribution engine offers, and the one-process engine.

An engine owns where variables live, how a step runs on its devices, and how
the worker processes of one job talk to each other. FastModel asks it for a
`scope()` to create variables and run `compile`/`fit`/`evaluate`/`predict`
in, `adopt()` to move variables made before the engine was chosen,
`prepare_optimizer()`, and whether `fit` feeds it the global batch
(`feeds_global_batch()`). Callbacks ask it who this worker is
(`rank`, `size`, `is_chief`) and for collectives over the workers
(`allreduce`, `allgather`, `broadcast`, `broadcast_variables`, `barrier`).

This class is the engine of a single process (one device, or several local
devices under a subclass): every collective is the identity. The
multi-worker engines override the collectives with their own operations
(MultiWorkerMirroredStrategy's, Horovod's, JAX's); nothing here sends bytes.
"""

import contextlib

import keras
import numpy as np

from keras_fastrain import _keras_internals
from keras_fastrain.devices import host_array
from keras_fastrain.validation import check_choice, check_int

__all__ = ["Engine"]

REDUCE_OPS = ("mean", "sum", "max")


class Engine:
    """Trains on one device, the way plain Keras does.

    `keras_fastrain.distribute.current()` and `resolve_engine()` return the
    engine to use; the multi-worker and multi-device engines subclass this
    one.

    Args:
        reason: String. Why this engine was chosen (FastModel logs it).
            Defaults to `"given"`.

    Attributes:
        name: String. The engine's name, as `distribute=` accepts it.
        num_replicas: Integer. How many model replicas train in step, over
            all workers; the global batch is split across them.
        rank: Integer. This worker process's index, 0 to `size - 1`.
        size: Integer. How many worker processes train together.
        local_rank: Integer. This worker's index on its own host.
        local_size: Integer. How many workers run on this worker's host.
        is_chief: Bool. Whether this worker reports for all (rank 0).
        averages_gradients: Bool. Whether a training step already averages
            gradients over all replicas (so `DistributedOptimizer` has
            nothing to add).
        weights_can_diverge: Bool. Whether each worker holds its own copy
            of the weights, which a missed broadcast or an unaveraged
            gradient can set apart (checked by
            `keras_fastrain.callbacks.agreement`).
        in_step_replicas: Bool. Whether several replicas run inside each
            step, under a `tf.distribute` strategy or a `keras.distribution`
            (rather than one per worker process, as with Horovod).
        xla_incompatible: Tuple of the operation names the engine adds to a
            step that XLA cannot compile.
        reason: String. Why this engine was chosen.

    Example:

    ```python
    engine = keras_fastrain.distribute.current()  # this process's engine
    total = engine.allreduce(local_count, "sum")  # every worker gets the sum
    if engine.is_chief:
        print(f"{total} samples over {engine.size} workers")
    ```
    """

    name = "none"
    averages_gradients = True
    weights_can_diverge = False
    xla_incompatible = ()

    def __init__(self, reason="given"):
        self.reason = reason

    @property
    def num_replicas(self):
        return 1

    @property
    def devices(self):
        return ()

    @property
    def in_step_replicas(self):
        return self.num_replicas > 1

    @property
    def rank(self):
        return 0

    @property
    def size(self):
        return 1

    @property
    def local_rank(self):
        return 0

    @property
    def local_size(self):
        return 1

    @property
    def is_chief(self):
        return self.rank == 0

    def scope(self):
        """A context in which variables are created and steps run."""
        return contextlib.nullcontext()

    def adopt(self, model, variables):
        """Puts `model` and `variables` made outside `scope()` on the engine.

        Args:
            model: The `keras.Model` that trains on this engine.
            variables: List of its Keras variables (weights, optimizer and
                metric variables), wherever they were created.

        Returns:
            The number of variables moved.
        """
        del model, variables
        return 0

    def check_batches(self, num_samples, batch_size):
        """Raises if `num_samples` in batches of `batch_size` cannot run here."""
        del num_samples, batch_size

    def before_fit(self):
        """Called on every worker at the start of each `fit` (by FastModel
        and the multi-worker callbacks, and once when a multi-worker engine
        starts): whatever must happen on all workers together before
        training. With several workers, it lets one of them save alone
        (Horovod's rank-0 checkpoints): Keras's saving creates variables,
        which under a multi-worker strategy or distribution is a collective,
        unless its cache was filled on every worker together. Whether to
        fill it is decided together too (a cache emptied on one worker)."""
        if self.size > 1 and self.allreduce(int(_keras_internals.saving_cache_missing()), "max"):
            _keras_internals.prime_saving_caches()

    def prepare_optimizer(self, optimizer):
        """Returns an optimizer that can train under this engine."""
        return optimizer

    def feeds_global_batch(self):
        """Whether `fit` takes the global batch in every process (Keras's
        `tf.distribute` convention), rather than this worker's share."""
        return True

    # Collectives over the worker processes. Values are numbers or arrays;
    # results are numpy arrays (or Python floats for Python numbers).

    def allreduce(self, value, op="mean"):
        """Reduces `value` over all workers with `op` (`"mean"`, `"sum"` or
        `"max"`); every worker gets the result."""
        check_choice("op", op, REDUCE_OPS)
        return _like(value, self._allreduce(_as_array(value), op))

    def allgather(self, value):
        """Every worker's `value` (all of one shape), stacked in rank order
        on a new first axis, on every worker."""
        return self._allgather(_as_array(value))

    def broadcast(self, value, root_rank=0):
        """`root_rank`'s `value` on every worker."""
        check_int("root_rank", root_rank, minimum=0, maximum=self.size - 1)
        return _like(value, self._broadcast(_as_array(value), root_rank))

    def broadcast_variables(self, variables, root_rank=0):
        """Assigns `root_rank`'s values to `variables` on every worker."""
        check_int("root_rank", root_rank, minimum=0, maximum=self.size - 1)
        if self.size == 1:
            return
        for variable in variables:
            local = host_array(variable)
            variable.assign(self._broadcast(local, root_rank).astype(local.dtype))

    def barrier(self):
        """Returns once every worker has reached it."""
        self.allreduce(0.0, "sum")

    # An engine provides `_allgather`; reducing and broadcasting through it
    # suits the small values callbacks exchange. Engines with a native
    # all-reduce or broadcast (Horovod) override these two.

    def _allgather(self, array):
        return array[None]

    def _allreduce(self, array, op):
        gathered = self._allgather(array)
        if op == "mean":
            return np.mean(gathered, axis=0, dtype=np.result_type(array.dtype, np.float32))
        return (np.sum if op == "sum" else np.max)(gathered, axis=0).astype(array.dtype)

    def _broadcast(self, array, root_rank):
        return self._allgather(array)[root_rank]

    def describe(self):
        devices = f" over {', '.join(self.devices)}" if self.devices else ""
        workers = f", worker {self.rank} of {self.size}" if self.size > 1 else ""
        return f"{self.name}{devices}{workers}"

    def __repr__(self):
        return f"<{type(self).__name__} {self.describe()}>"


def _as_array(value):
    if isinstance(value, keras.Variable) or keras.ops.is_tensor(value):
        return host_array(value)
    return np.asarray(value)


def _like(value, array):
    """Python numbers come back as Python numbers."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return array.item()
    return array
