"""A short matrix-multiply probe of the device's peak FLOP/s.

Utilization figures need a peak to compare against. Datasheet peaks are rarely
reached; a square matmul in the model's compute dtype is what the hardware
really sustains for dense layers, so the profiler measures that once.
"""

import time

import keras
import numpy as np

from keras_fastrain.validation import check_int


def measure_peak_flops(size=1024, repeats=5, dtype=None):
    """Returns the best FLOP/s of a `size` x `size` matmul on the default device.

    Args:
        size: Integer >= 16. The side of the square matrices. Defaults to `1024`.
        repeats: Integer >= 1. Timed runs after one warm-up; the fastest counts.
            Defaults to `5`.
        dtype: String or `None`. The dtype; defaults to the global policy's
            compute dtype (`keras.config.dtype_policy().compute_dtype`).

    Example:

    ```python
    print(f"{keras_fastrain.peak.measure_peak_flops() / 1e9:.0f} GFLOP/s")
    ```
    """
    size = check_int("size", size, minimum=16)
    repeats = check_int("repeats", repeats, minimum=1)
    dtype = dtype or keras.config.dtype_policy().compute_dtype
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)
    keras.ops.convert_to_numpy(keras.ops.matmul(a, b))  # warm-up, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        # Reading one element back waits for the device to finish.
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
