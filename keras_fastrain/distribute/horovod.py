"""Horovod as an engine, through its core TensorFlow operations only.

`horovod.tensorflow.keras` fails on Keras 3 (`'Variable' object has no
attribute 'ref'`, and Keras 3's train step never calls the hook its
optimizer relies on; horovod#4290). The core operations work on Keras 3
values (DESIGN fact 2): `hvd.allreduce`, `hvd.allgather`, `hvd.broadcast`.
Install Horovod with `scripts/build_horovod.sh` and launch with
`horovodrun -np N -H host:N --gloo python script.py`.
"""

import numpy as np

from keras_fastrain.distribute.engine import Engine


def _horovod():
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise ImportError(
            "The horovod engine needs Horovod built for this TensorFlow: run "
            "scripts/build_horovod.sh (pip install keras-fastrain[horovod] alone cannot "
            "build it against TensorFlow 2.21)."
        ) from error
    return hvd


class HorovodEngine(Engine):
    """One worker process of a `horovodrun` job.

    Each worker trains its own copy of the model on its own share of the
    data (`fit` takes this worker's batch, so `feeds_global_batch()` is
    False); `DistributedOptimizer` averages the gradients over the workers
    before each update, and `BroadcastGlobalVariablesCallback` starts them
    from the same weights.

    Args:
        reason: String. Why this engine was chosen.
    """

    name = "horovod"
    averages_gradients = False
    weights_can_diverge = True
    xla_incompatible = ("HorovodAllreduce",)  # no XLA kernel without HOROVOD_ENABLE_XLA_OPS

    def __init__(self, reason="given"):
        super().__init__(reason)
        self.hvd = _horovod()
        self.hvd.init()

    @property
    def num_replicas(self):
        return self.size

    @property
    def in_step_replicas(self):
        return False

    @property
    def rank(self):
        return self.hvd.rank()

    @property
    def size(self):
        return self.hvd.size()

    @property
    def local_rank(self):
        return self.hvd.local_rank()

    @property
    def local_size(self):
        return self.hvd.local_size()

    def feeds_global_batch(self):
        return False

    def prepare_optimizer(self, optimizer):
        """Wraps the optimizer (or the one a name gives) in
        `DistributedOptimizer`, unless it already averages."""
        import keras

        from keras_fastrain.distribute.optimizer import DistributedOptimizer

        if getattr(optimizer, "averages_over_workers", False):
            return optimizer
        return DistributedOptimizer(keras.optimizers.get(optimizer))

    def describe(self):
        return f"Horovod, worker {self.rank} of {self.size}"

    def _allgather(self, array):
        import tensorflow as tf

        gathered = self.hvd.allgather(tf.convert_to_tensor(array[None]))
        return gathered.numpy()

    def _allreduce(self, array, op):
        import tensorflow as tf

        hvd_op = {"mean": self.hvd.Average, "sum": self.hvd.Sum, "max": self.hvd.Max}[op]
        value = tf.convert_to_tensor(array if op != "mean" else array.astype(np.float64))
        return self.hvd.allreduce(value, op=hvd_op).numpy()

    def _broadcast(self, array, root_rank):
        import tensorflow as tf

        return self.hvd.broadcast(tf.convert_to_tensor(array), root_rank=root_rank).numpy()

    def averaging_optimizer(self, optimizer_class, config, compression):
        """An `optimizer_class` made from `config` that all-reduces (mean)
        the gradients through Horovod before applying them."""
        hvd = self.hvd

        class Averaging(optimizer_class):
            averages_over_workers = True

            def apply(self, grads, trainable_variables=None):
                import tensorflow as tf

                averaged = []
                for grad in grads:
                    if grad is None:
                        averaged.append(grad)
                        continue
                    sent = tf.cast(grad, tf.float16) if compression == "fp16" else grad
                    received = hvd.allreduce(sent, op=hvd.Average)
                    averaged.append(tf.cast(received, grad.dtype))
                return super().apply(averaged, trainable_variables)

        # Saved as, and loaded back as, the plain optimizer class.
        Averaging.__name__ = Averaging.__qualname__ = optimizer_class.__name__
        Averaging.__module__ = optimizer_class.__module__
        return Averaging.from_config(config)
