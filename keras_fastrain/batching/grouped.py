"""`GroupedBatches`: a `PyDataset`'s batches, served several at a time.

A user's own `keras.utils.PyDataset` decides its batch size itself, so it
cannot be re-sliced like arrays. It can grow by whole batches, though:
serving `group` consecutive batches as one multiplies the batch by `group`,
and `AdaptiveBatchSize` grows by integer factors. FastModel wraps a
`PyDataset` in this when an `AdaptiveBatchSize` trains it.
"""

import math

import keras
import numpy as np

from keras_fastrain.batching.resizable import ResizableBatches
from keras_fastrain.validation import check_int

__all__ = ["concatenate_batches", "GroupedBatches"]


class GroupedBatches(ResizableBatches):
    """Serves `group` consecutive batches of `source` as one.

    The batch size can change between epochs, in multiples of the source's
    batch size (`multiple_of`). The source's batches are read in the
    training thread, one group at a time (`workers=1`, whatever the
    source's own setting): read-ahead would serve batches of the old size
    after a change.

    Args:
        source: A `keras.utils.PyDataset` whose batches (but perhaps the
            last) all hold the same number of samples.
        group: Integer >= 1. Source batches per batch at first. Defaults
            to 1.

    Attributes:
        multiple_of: Integer. The source's batch size: every batch size is
            a multiple of it.
        num_samples: Integer. Samples per epoch (counting the last source
            batch as full).

    Example:

    ```python
    from keras_fastrain.batching import GroupedBatches
    from keras_fastrain.callbacks import AdaptiveBatchSize

    data = GroupedBatches(my_py_dataset)  # its batches of 64, served one at a time
    model.fit(data, epochs=8, callbacks=[AdaptiveBatchSize(data, schedule={2: 2, 4: 2})])
    ```
    """

    def __init__(self, source, group=1):
        super().__init__(workers=1)
        if not isinstance(source, keras.utils.PyDataset) or source.num_batches is None:
            raise TypeError(
                "Invalid value for argument `source`. Received: source of type "
                f"{type(source).__name__}. Expected a keras.utils.PyDataset with a length."
            )
        self.source = source
        first = keras.tree.flatten(source[0])
        self.multiple_of = len(first[0])
        self._multiple_reason = "the batch size of the PyDataset it groups"
        self.num_samples = self.multiple_of * source.num_batches
        self.batch_size = self.multiple_of * check_int("group", group, minimum=1)

    @property
    def num_batches(self):
        return math.ceil(self.source.num_batches / self._group)

    @property
    def _group(self):
        return self.batch_size // self.multiple_of

    def _batch(self, index):
        first = index * self._group
        last = min(first + self._group, self.source.num_batches)
        return concatenate_batches([self.source[i] for i in range(first, last)])

    def on_epoch_begin(self):
        self.source.on_epoch_begin()

    def on_epoch_end(self):
        self.source.on_epoch_end()

    def sample_batch(self, batch_size, rng):
        """About `batch_size` samples from source batches drawn at random
        (whole batches, cut to `batch_size`), for measurements."""
        count = min(self.source.num_batches, math.ceil(batch_size / self.multiple_of))
        picked = rng.choice(self.source.num_batches, size=count, replace=False)
        batch = concatenate_batches([self.source[int(i)] for i in np.sort(picked)])
        return keras.tree.map_structure(lambda a: a[:batch_size], batch)


def concatenate_batches(batches):
    """One batch of the given ones' samples, in order (structures kept)."""
    if len(batches) == 1:
        return batches[0]
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts), *batches)
