"""The devices Keras trains on, named the same way on every backend."""

import keras


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
