"""The devices Keras trains on, named the same way on every backend."""

import keras
import numpy as np

__all__ = ["host_array", "list_devices"]


def list_devices():
    """Returns device names such as `["cpu:0"]` or `["gpu:0", "gpu:1"]`.

    Uses `keras.distribution.list_devices()` where the backend supports it
    (TensorFlow, JAX); on torch Keras 3.15 has no distribution backend (the
    call fails), so there the names come from torch itself.
    """
    if keras.backend.backend() != "torch":
        return list(keras.distribution.list_devices())
    import torch

    if torch.cuda.is_available():
        return [f"gpu:{index}" for index in range(torch.cuda.device_count())]
    return ["cpu:0"]


def host_array(value):
    """`value` (a tensor or variable) as a numpy array in this process.

    A JAX array replicated over several processes cannot be fetched whole
    (its devices are not all this process's): this process's copy is
    taken, which holds the full value. Likewise a TensorFlow variable
    mirrored by a `tf.distribute` strategy gives its local copy.
    """
    if isinstance(value, keras.Variable):
        value = value.value
    if not getattr(value, "is_fully_addressable", True):
        value = value.addressable_data(0)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # A variable under a tf.distribute strategy reads as its local value.
        return np.asarray(tf.convert_to_tensor(value).numpy())
    return np.asarray(keras.ops.convert_to_numpy(value))
