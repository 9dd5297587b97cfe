"""Batch size: find the fastest that fits, serve batches whose size changes.

- `find_batch_size` / `BatchSizeFinder`: measure throughput over candidate
  batch sizes within a memory budget (`search.py` holds the algorithm).
- `ResizableDataset`: arrays as a `keras.utils.PyDataset` whose batch size
  can change between epochs; `GroupedBatches`: a `PyDataset`'s batches
  served several at a time, so that its batch can grow too; `TFDataBatches`
  the same for a batched `tf.data.Dataset`.
- `noise_scale`: the gradient noise scale of McCandlish et al. (2018).
"""

from keras_fastrain.batching.finder import BatchSizeFinder, find_batch_size
from keras_fastrain.batching.grouped import GroupedBatches
from keras_fastrain.batching.resizable import ResizableDataset
from keras_fastrain.batching.search import BatchSizeSearch, DoesNotFit, Trial, search_batch_size
from keras_fastrain.batching.tf_data_batches import TFDataBatches

__all__ = [
    "BatchSizeFinder",
    "BatchSizeSearch",
    "DoesNotFit",
    "GroupedBatches",
    "ResizableDataset",
    "TFDataBatches",
    "Trial",
    "find_batch_size",
    "search_batch_size",
]
