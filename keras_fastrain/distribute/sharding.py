"""Each worker's share of the data, for engines where every worker feeds its
own part of the global batch (Horovod, JAX multi-process)."""

import keras
import numpy as np

from keras_fastrain.validation import check_int

__all__ = ["shard", "shard_dataset", "worker_rows"]


def worker_rows(num_samples, batch_size, rank, size):
    """The row indices worker `rank` of `size` trains on.

    Global batch `i` holds rows `[i * batch_size, (i + 1) * batch_size)`, as in
    one process; each worker takes a contiguous `batch_size / size` of it, so
    that together the workers step through the same batches one process
    would. The last, shorter batch is split the same way; the `num_samples %
    size` rows that cannot be split evenly are left out.
    """
    check_int("batch_size", batch_size, minimum=size)
    if batch_size % size:
        raise ValueError(
            f"Invalid value for argument `batch_size`. Received: batch_size={batch_size}. "
            f"Expected a multiple of the {size} workers: it is the global batch, split "
            "evenly over them."
        )
    usable = num_samples - num_samples % size
    full = usable - usable % batch_size
    rows = np.arange(usable)
    mine = rows[:full].reshape(-1, size, batch_size // size)[:, rank].ravel()
    rest = rows[full:usable].reshape(size, -1)[rank]
    return np.concatenate([mine, rest])


def shard(data, rows):
    """`data` (arrays, or a structure of them; `None` stays) at `rows`."""
    if data is None:
        return None
    return keras.tree.map_structure(lambda a: np.asarray(a)[rows], data)


def shard_dataset(dataset, rank, size):
    """A `tf.data` dataset's batches, every `size`-th from `rank`: each worker
    feeds the dataset's batch, so the global batch is `size` of them."""
    return dataset.shard(size, rank)
