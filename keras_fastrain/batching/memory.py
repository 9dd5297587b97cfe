"""How much memory a batch needs, and how much there is.

On an accelerator, a batch that does not fit fails with an out-of-memory
error the search catches (`is_out_of_memory`). On the CPU there is no such
error: the process grows until the operating system kills it. So on the CPU
each batch is checked against a budget before it runs, with an estimate
from the model's shapes (`training_bytes_per_sample`).
"""

import gc
import math
import os

import keras
import numpy as np

from keras_fastrain import flops

__all__ = [
    "available_memory",
    "default_budget",
    "is_out_of_memory",
    "release_cached_memory",
    "training_bytes_per_sample",
]

# A training step keeps every layer's output for the backward pass and
# creates its gradient; optimizers and kernels add workspace of the same
# order. Four times the forward activations is on the safe side for the
# layers Keras ships: an estimate that errs towards too much.
TRAINING_MEMORY_FACTOR = 4

# Share of the memory available at the start of the search that one batch
# may use on the CPU, leaving room for the data, the framework and others.
DEFAULT_BUDGET_SHARE = 0.5


def release_cached_memory():
    """Gives memory held by a failed step back, so that what fits still does.

    torch's caching allocator keeps the blocks of a step that ran out of
    memory reserved: on an H200 limited to 5.6 GiB, a search that caught an
    out-of-memory error at batch 256 left 2.4 GiB reserved, and training at
    batch 128, which had fitted, then failed. JAX and TensorFlow free or
    reuse the buffers of a failed step themselves; collecting garbage drops
    the last references to them.
    """
    gc.collect()
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def training_bytes_per_sample(model, sample):
    """Estimated bytes one sample adds to a training step of `model`.

    Args:
        model: A built `keras.Model`.
        sample: One batch of inputs (a structure of arrays); only shapes and
            dtypes are read.

    Returns:
        Integer: the input's bytes plus `TRAINING_MEMORY_FACTOR` times the
        bytes of every layer's output, per sample. Layers whose output shape
        is unknown are left out, so the estimate is then a lower bound.
    """
    input_bytes = sum(
        math.prod(np.shape(a)[1:]) * np.dtype(getattr(a, "dtype", "float32")).itemsize
        for a in keras.tree.flatten(sample)
    )
    itemsize = np.dtype(keras.backend.standardize_dtype(model.compute_dtype)).itemsize
    elements = 0
    for _, layer in flops.leaf_layers(model):
        _, output_shape = flops.layer_shapes(layer)
        if output_shape is None:
            continue
        for shape in _output_shapes(output_shape):
            count = flops.elements_per_sample(shape)
            elements += count or 0
    return int(input_bytes + TRAINING_MEMORY_FACTOR * elements * itemsize)


def _output_shapes(output_shape):
    """A layer's output shape, or each of its outputs' shapes."""
    if output_shape and all(isinstance(d, (int, type(None))) for d in output_shape):
        return [output_shape]
    return [s for s in keras.tree.flatten(output_shape, none_is_leaf=False) if s]


def available_memory():
    """Bytes of memory the system can still give, or `None` if unknown.

    Reads `MemAvailable` from /proc/meminfo (Linux), else asks `os.sysconf`.
    """
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_budget(device_kind):
    """The CPU memory budget for one batch, or `None` on an accelerator
    (where running out of memory is an error the search catches)."""
    if device_kind != "cpu":
        return None
    available = available_memory()
    return None if available is None else int(available * DEFAULT_BUDGET_SHARE)


def is_out_of_memory(error):
    """Whether `error` is a device running out of memory, on any backend.

    TensorFlow raises `ResourceExhaustedError`, JAX an `XlaRuntimeError`
    whose message starts with RESOURCE_EXHAUSTED, torch
    `torch.OutOfMemoryError`; all say "out of memory" or "resource
    exhausted" in their message.
    """
    name = type(error).__name__
    if name in ("ResourceExhaustedError", "OutOfMemoryError"):
        return True
    text = str(error).lower()
    return "resource_exhausted" in text or "resource exhausted" in text or "out of memory" in text
