"""`keras.distribution.DataParallel` on JAX as an engine."""

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.distribute.engine import Engine

__all__ = ["data_parallel_engine", "JaxDataParallelEngine"]


class JaxDataParallelEngine(Engine):
    """Replicates the model over JAX devices and splits each batch among them.

    Keras places a variable when it is created, under the distribution set
    then; variables made before it are re-placed on the mesh by `adopt()`.

    Args:
        distribution: A `keras.distribution.DataParallel` (or `ModelParallel`).
        reason: String. Why this engine was chosen.
    """

    name = "data_parallel"

    def __init__(self, distribution, reason="given"):
        super().__init__(reason)
        self.distribution = distribution

    @property
    def num_replicas(self):
        return int(self.distribution.device_mesh.devices.size)

    @property
    def devices(self):
        return tuple(str(d) for d in self.distribution.device_mesh.devices.flatten())

    def describe(self):
        return f"{type(self.distribution).__name__} over {', '.join(self.devices)}"

    def scope(self):
        return self.distribution.scope()

    def check_batches(self, num_samples, batch_size):
        """Every batch must split evenly over the devices (JAX cannot shard
        7 rows over 2 devices: IndivisibleError); a short last batch too."""
        replicas = self.num_replicas
        last = num_samples % batch_size
        if batch_size % replicas or last % replicas:
            raise ValueError(
                f"DataParallel splits every batch evenly over {replicas} devices, and "
                f"{num_samples} samples in batches of {batch_size} give a batch of "
                f"{last if last % replicas else batch_size}. Use a batch_size and a "
                f"number of samples that are multiples of {replicas} (e.g. "
                f"x[:{num_samples - num_samples % replicas}]), or a tf.data dataset "
                "batched with drop_remainder=True."
            )

    def adopt(self, model, variables):
        del model
        mesh = self.distribution.device_mesh
        return sum(_keras_internals.relayout_jax_variable(v, mesh) for v in variables)


def data_parallel_engine(devices, reason):
    """`DataParallel` over `devices` (Keras device names such as `"cpu:0"`)."""
    return JaxDataParallelEngine(keras.distribution.DataParallel(devices=list(devices)), reason)
