"""`ResizableDataset`: arrays in batches whose size can change between epochs.

Keras fixes the batch size of arrays when `fit` starts. A `PyDataset` is
asked for its length and its batches anew every epoch, so a `PyDataset`
whose `batch_size` changes between epochs lets `AdaptiveBatchSize` grow the
batch of a plain `keras.Model` (the callback also tells `fit` the new
number of steps, so the progress bar and the epoch's end stay right).
"""

import math

import keras
import numpy as np

from keras_fastrain.validation import check_bool, check_int

__all__ = ["ResizableBatches", "ResizableDataset"]


class ResizableBatches(keras.utils.PyDataset):
    """A `PyDataset` whose batch size can change between epochs: what
    `AdaptiveBatchSize` resizes.

    Subclasses set `multiple_of` and `num_samples`, and define
    `num_batches`, `_batch(index)` and `sample_batch(batch_size, rng)`.
    """

    multiple_of = 1
    _multiple_reason = "the replicas that split it"

    @property
    def batch_size(self):
        """The size of the batches served from the next epoch on."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value):
        value = check_int("batch_size", value, minimum=self.multiple_of)
        if value % self.multiple_of:
            raise ValueError(
                f"Invalid value for argument `batch_size`. Received: batch_size={value}. "
                f"Expected a multiple of {self.multiple_of} ({self._multiple_reason})."
            )
        self._batch_size = value

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        if not 0 <= index < self.num_batches:
            raise IndexError(f"Batch {index} of a dataset of {self.num_batches} batches.")
        return self._batch(index)


class ResizableDataset(ResizableBatches):
    """Serves `(x, y, sample_weight)` in batches of a changeable size.

    Every epoch it draws a new order of the samples (when `shuffle`), then
    serves consecutive slices of `batch_size` samples; the last batch is
    shorter (trimmed to a multiple of `multiple_of`, dropping at most
    `multiple_of - 1` samples). Set `batch_size` between epochs, or let
    `keras_fastrain.callbacks.AdaptiveBatchSize` do it.

    It loads batches in the training thread (`workers=1`): slicing arrays
    costs far less than a step, and Keras's loader threads read batches
    ahead, which would serve batches of the old size after a change.

    Args:
        x: Array, or a list/dict of arrays, of the inputs.
        y: Array, structure of arrays, or `None`.
        sample_weight: Array or `None`.
        batch_size: Integer >= 1. The first epochs' batch size.
        shuffle: Bool. A new order of the samples every epoch. Defaults to
            True.
        seed: Integer or `None`. Seeds the order.
        multiple_of: Integer >= 1. Every batch's size is a multiple of it
            (the number of replicas that split each batch). Defaults to 1.

    Attributes:
        x, y, sample_weight: The arrays given.
        num_samples: Integer. How many samples the arrays hold.

    Example:

    ```python
    data = ResizableDataset(x_train, y_train, batch_size=64)
    model.fit(data, epochs=10, callbacks=[AdaptiveBatchSize(data, schedule={3: 2})])
    ```
    """

    def __init__(
        self, x, y=None, sample_weight=None, batch_size=32, shuffle=True, seed=None, multiple_of=1
    ):
        super().__init__(workers=1)
        arrays = [a for a in keras.tree.flatten((x, y, sample_weight)) if a is not None]
        if not arrays or not all(hasattr(a, "shape") and len(a.shape) >= 1 for a in arrays):
            raise TypeError(
                "Invalid value for argument `x`. Received: x of type "
                f"{type(x).__name__}. Expected an array or a list/dict of arrays (numpy "
                "or anything with a shape); ResizableDataset slices them into batches."
            )
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(
                "Invalid values for arguments `x`, `y` and `sample_weight`. Received "
                f"arrays of {sorted(lengths)} samples. Expected all with the same number "
                "of samples."
            )
        if y is None and sample_weight is not None:
            raise ValueError(
                "Invalid value for argument `sample_weight`. Received sample weights "
                "without targets (y=None). Expected `y` as well."
            )
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self._data = tuple(part for part in (x, y, sample_weight) if part is not None)
        self.num_samples = lengths.pop()
        self.multiple_of = check_int("multiple_of", multiple_of, minimum=1)
        self.shuffle = check_bool("shuffle", shuffle)
        self.batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(self.num_samples)

    def _used_samples(self):
        """Samples served per epoch: all but the last batch's unsplittable rest."""
        return self.num_samples - (self.num_samples % self._batch_size) % self.multiple_of

    @property
    def num_batches(self):
        return math.ceil(self._used_samples() / self._batch_size)

    def _batch(self, index):
        start = index * self._batch_size
        rows = self._order[start : min(start + self._batch_size, self._used_samples())]
        return self._take(rows)

    def _take(self, rows):
        return keras.tree.map_structure(lambda a: a[rows], self._data)

    def on_epoch_begin(self):
        if self.shuffle:
            self._order = self._rng.permutation(self.num_samples)

    def sample_batch(self, batch_size, rng):
        """A batch of `batch_size` samples drawn at random (without
        replacement), for measurements outside the epoch's order."""
        rows = np.sort(rng.choice(self.num_samples, size=batch_size, replace=False))
        return self._take(rows)
