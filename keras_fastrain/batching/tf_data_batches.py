"""`TFDataBatches`: a batched `tf.data.Dataset`, served several batches at a time.

A `tf.data` pipeline fixes its batch size when it is built, and Keras builds
its iterator once per `fit`. To let `AdaptiveBatchSize` grow the batch of a
`tf.data` input, this `PyDataset` reads the dataset's batches in order
(the pipeline's own `map`, `prefetch` and threads still run) and serves
`group` of them as one batch.
"""

import math

import keras

from keras_fastrain.batching.grouped import concatenate_batches
from keras_fastrain.batching.resizable import ResizableBatches
from keras_fastrain.validation import check_int

__all__ = ["TFDataBatches"]


class TFDataBatches(ResizableBatches):
    """Serves `group` consecutive batches of a batched `tf.data.Dataset` as one.

    Batches are read in order, as `fit` asks for them; asking for an
    earlier batch (Keras peeks at the first ones to learn their shapes)
    starts the dataset's iterator again, so every epoch reads the dataset
    once from its start, reshuffled if the dataset reshuffles.

    Args:
        dataset: A batched `tf.data.Dataset` of known, finite length
            (`dataset.cardinality()`), whose batches (but perhaps the last)
            hold the same number of samples.
        group: Integer >= 1. Dataset batches per batch at first. Defaults
            to 1.

    Attributes:
        multiple_of: Integer. The dataset's batch size.
        num_samples: Integer. Samples per epoch (counting the last batch
            as full).

    Example:

    ```python
    from keras_fastrain.batching import TFDataBatches
    from keras_fastrain.callbacks import AdaptiveBatchSize

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(10_000).batch(64)
    data = TFDataBatches(dataset)
    model.fit(data, epochs=8, callbacks=[AdaptiveBatchSize(data, schedule={2: 2, 4: 2})])
    ```
    """

    def __init__(self, dataset, group=1):
        super().__init__(workers=1)
        count = int(dataset.cardinality())
        if count < 1:  # tf.data's UNKNOWN (-2) and INFINITE (-1) cardinality
            raise ValueError(
                "Invalid value for argument `dataset`. Received a tf.data.Dataset of "
                f"cardinality {count}. Expected a finite, known number of batches: "
                "AdaptiveBatchSize counts an epoch's steps (use dataset.apply("
                "tf.data.experimental.assert_cardinality(n)) if you know it)."
            )
        self.dataset = dataset
        self.source_batches = count
        self._iterator, self._position = None, None
        first = self._read(0)
        self.multiple_of = _length(first)
        self._multiple_reason = "the batch size of the tf.data.Dataset it groups"
        self.num_samples = self.multiple_of * count
        self.batch_size = self.multiple_of * check_int("group", group, minimum=1)
        self._probes = None

    @property
    def num_batches(self):
        return math.ceil(self.source_batches / (self.batch_size // self.multiple_of))

    def _read(self, source_index):
        """The dataset's batch `source_index`, reading on from the last one."""
        if self._iterator is None or source_index != self._position:
            self._iterator = self.dataset.as_numpy_iterator()
            self._position = 0
            for _ in range(source_index):
                next(self._iterator)
                self._position += 1
        self._position += 1
        return next(self._iterator)

    def _batch(self, index):
        group = self.batch_size // self.multiple_of
        first = index * group
        last = min(first + group, self.source_batches)
        return concatenate_batches([self._read(i) for i in range(first, last)])

    def on_epoch_begin(self):
        self._iterator = None  # each epoch reads the dataset from its start

    def sample_batch(self, batch_size, rng):
        """About `batch_size` samples from the dataset's next batches (a
        second iterator, started again when it runs out), cut to
        `batch_size`; the dataset's own shuffling makes them random."""
        del rng  # the dataset decides its order
        parts, count = [], 0
        while count < batch_size:
            try:
                batch = next(self._probes) if self._probes is not None else None
            except StopIteration:
                batch = None
            if batch is None:
                self._probes = self.dataset.as_numpy_iterator()
                batch = next(self._probes)
            parts.append(batch)
            count += _length(batch)
        return keras.tree.map_structure(lambda a: a[:batch_size], concatenate_batches(parts))


def _length(batch):
    return len(keras.tree.flatten(batch)[0])
