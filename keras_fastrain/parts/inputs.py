"""What the parts need to know about the data a call receives."""

import keras
import numpy as np

__all__ = ["is_tf_dataset", "sample_count"]


def is_tf_dataset(data):
    """Whether `data` is a `tf.data.Dataset` (without importing TensorFlow)."""
    module = type(data).__module__ or ""
    if not module.startswith("tensorflow"):
        return False
    import tensorflow as tf

    return isinstance(data, tf.data.Dataset)


def sample_count(x):
    """The number of samples in array inputs, or `None` for datasets."""
    if x is None or isinstance(x, keras.utils.PyDataset):
        return None
    arrays = keras.tree.flatten(x)
    if not arrays or not all(isinstance(a, np.ndarray) for a in arrays):
        return None
    return len(arrays[0])
