"""A short matrix-multiply probe of the device's peak FLOP/s.

Utilization figures need a peak to compare against. Datasheet peaks are rarely
reached; a square matmul in the model's compute dtype is what the hardware
really sustains for dense layers, so the profiler measures that.

The peak is a property of the hardware, not of a training run: it is measured
once per process for each (backend, default device, dtype, size, repeats) and
kept, so a second profiler or a second `fit` pays nothing for it.
`clear_peak_cache()` forgets the figures.
"""

import functools
import time

import keras
import numpy as np

from keras_fastrain.devices import list_devices
from keras_fastrain.validation import check_int

__all__ = ["clear_peak_cache", "measure_peak_flops"]


def measure_peak_flops(size=1024, repeats=5, dtype=None):
    """Returns the best FLOP/s of a `size` x `size` matmul on the default device.

    The probe runs once per process for each backend, default device (the
    first of `keras.distribution.list_devices()`), dtype, `size` and
    `repeats`; later calls return the figure measured then.

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
    return _cached_peak(keras.backend.backend(), list_devices()[0], dtype, size, repeats)


def clear_peak_cache():
    """Forgets every peak measured so far; the next `measure_peak_flops` probes again.

    The cached figure is the best of a few matmuls, taken the first time it
    was asked for. Clear it when that moment was not representative of the
    device: for instance, when another process was using the device then, or
    when its clocks or power limits have since been changed.

    Example:

    ```python
    keras_fastrain.peak.clear_peak_cache()
    fresh = keras_fastrain.peak.measure_peak_flops()
    ```
    """
    _cached_peak.cache_clear()


@functools.cache
def _cached_peak(backend, device, dtype, size, repeats):
    # `backend` and `device` only key the cache: the matmul runs where Keras
    # places it by default, which is `device`. (Inside a `keras.device(...)`
    # scope it may run elsewhere; public Keras API does not tell the scope.)
    del backend, device
    return _probe(size, repeats, dtype)


def _probe(size, repeats, dtype):
    """Times the matmuls; returns the best FLOP/s."""
    rng = np.random.default_rng(0)
    a, b = (
        keras.ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32), dtype)
        for _ in range(2)
    )

    def one_matmul():
        # Reading one element back waits for the device to finish.
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])

    one_matmul()  # warm-up: kernel selection, and tracing where the backend traces
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        one_matmul()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
