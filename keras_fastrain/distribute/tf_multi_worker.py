"""`tf.distribute.MultiWorkerMirroredStrategy` as an engine: TF_CONFIG workers."""

import json
import os

import numpy as np

from keras_fastrain import _keras_internals
from keras_fastrain.distribute.tf_strategy import TFStrategyEngine
from keras_fastrain.validation import check_float

__all__ = ["MultiWorkerEngine", "tf_config_tasks"]

_GATHERABLE = ("float16", "float32", "float64", "int32", "int64")


def tf_config_tasks(environ=None):
    """The number of tasks TF_CONFIG's cluster lists (0 without TF_CONFIG)."""
    environ = os.environ if environ is None else environ
    config = json.loads(environ.get("TF_CONFIG") or "{}")
    return sum(len(tasks) for tasks in config.get("cluster", {}).values())


class MultiWorkerEngine(TFStrategyEngine):
    """Trains in step over the workers that TF_CONFIG lists.

    Each worker runs the same script with its own TF_CONFIG (same cluster,
    its own task index). The strategy becomes the default of the thread
    that starts the engine (`tf.distribute.experimental_set_strategy`; set
    again before each fit if `clear_session()` dropped it), so every model
    and optimizer made there after the engine is under it, scope or not.
    Variables created under the strategy start from the chief's values;
    gradients are all-reduced in every step; `fit` takes the global batch
    and TensorFlow splits it over the workers. The collectives
    (`allreduce`, `broadcast`, ...) go through the strategy's own
    all-gather.

    The strategy must be created before TensorFlow runs anything else, so
    make the engine first (`keras_fastrain.distribute.init()` at the top of
    the script, or `FastModel(distribute="auto")` before other TensorFlow
    work).

    Args:
        timeout_seconds: Number. How long a collective may wait for the
            other workers before it fails (a worker that died).
        reason: String. Why this engine was chosen.
    """

    name = "multi_worker"
    weights_can_diverge = True

    def __init__(self, timeout_seconds=120, reason="given"):
        check_float("timeout_seconds", timeout_seconds, low=0.0, closed=(False, True))
        import tensorflow as tf

        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_seconds)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except RuntimeError as error:
            raise RuntimeError(
                "MultiWorkerMirroredStrategy must be created before TensorFlow runs "
                "anything else: call keras_fastrain.distribute.init() at the top of the "
                f"script, before building models or data ({error})."
            ) from error
        super().__init__(strategy, reason)
        # The process's default strategy from now on, so that a model and an
        # optimizer built anywhere after init() (Horovod-style scripts build
        # them at the top level, not in a scope) are mirrored and averaged.
        tf.distribute.experimental_set_strategy(strategy)
        _keras_internals.fix_multi_worker_fit()
        resolver = strategy.cluster_resolver
        tasks = resolver.cluster_spec().as_dict()
        # The chief, if TF_CONFIG names one, trains too and comes first.
        ordered = [
            (kind, index)
            for kind in ("chief", "worker")
            for index in range(len(tasks.get(kind, [])))
        ]
        self._rank = ordered.index((resolver.task_type, int(resolver.task_id)))
        self._size = len(ordered)
        addresses = [tasks[kind][index] for kind, index in ordered]
        hosts = [address.rsplit(":", 1)[0] for address in addresses]
        self._local_rank = hosts[: self._rank].count(hosts[self._rank])
        self._local_size = hosts.count(hosts[self._rank])
        self.before_fit()

    def before_fit(self):
        """Also sets the strategy as the default again if
        `keras.backend.clear_session()` dropped it (it resets the graph that
        holds it), so models built after one are mirrored too."""
        import tensorflow as tf

        if not tf.distribute.has_strategy():
            tf.distribute.experimental_set_strategy(self.strategy)
        super().before_fit()

    @property
    def rank(self):
        return self._rank

    @property
    def size(self):
        return self._size

    @property
    def local_rank(self):
        return self._local_rank

    @property
    def local_size(self):
        return self._local_size

    def describe(self):
        return (
            f"MultiWorkerMirroredStrategy, worker {self.rank} of {self.size} "
            f"({self.num_replicas} replicas)"
        )

    def _allgather(self, array):
        import tensorflow as tf

        # The strategy gathers these dtypes only.
        sent = (
            array
            if array.dtype.name in _GATHERABLE
            else array.astype(np.float64 if array.dtype.kind == "f" else np.int64)
        )
        value = tf.convert_to_tensor(sent[None])
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda context: value
        )
        gathered = self.strategy.gather(per_replica, axis=0).numpy()
        # One row per replica; each worker's replicas hold the same value.
        per_worker = self.num_replicas // self.size
        return gathered[::per_worker].astype(array.dtype)
