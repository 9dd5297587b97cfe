"""Batch size: find the fastest that fits, serve batches whose size changes.

- `BatchSizeFinder`: measures throughput over candidate batch sizes within a
  memory budget (`finder.py`; the search itself is `search.py`) and returns
  a `BatchSizeSearch`, the measured `BatchSizeTrial`s and the batch chosen
  (`trials.py`).
- `ResizableDataset`: arrays as a `keras.utils.PyDataset` whose batch size
  can change between epochs; `GroupedBatches`: a `PyDataset`'s batches
  served several at a time, so that its batch can grow too; `TFDataBatches`
  the same for a batched `tf.data.Dataset`.
- `noise_scale`: the gradient noise scale of McCandlish et al. (2018).

0.1.0's names `find_batch_size` (now `BatchSizeFinder(**options).find`),
`search_batch_size` (now in `keras_fastrain.batching.search`), `DoesNotFit`
and `Trial` still import, with a `DeprecationWarning`.
"""

import warnings

from keras_fastrain.batching.finder import BatchSizeFinder
from keras_fastrain.batching.grouped import GroupedBatches
from keras_fastrain.batching.resizable import ResizableDataset
from keras_fastrain.batching.tf_data_batches import TFDataBatches
from keras_fastrain.batching.trials import BatchSizeSearch, BatchSizeTrial, DoesNotFitError

__all__ = [
    "BatchSizeFinder",
    "BatchSizeSearch",
    "BatchSizeTrial",
    "DoesNotFitError",
    "GroupedBatches",
    "ResizableDataset",
    "TFDataBatches",
]

# 0.1.0's names: name -> (module, its name there, what to use instead).
_RENAMED = {
    "DoesNotFit": ("trials", "DoesNotFitError", "DoesNotFitError"),
    "Trial": ("trials", "BatchSizeTrial", "BatchSizeTrial"),
    "find_batch_size": ("finder", "find_batch_size", "BatchSizeFinder(**options).find"),
    "search_batch_size": (
        "search",
        "search_batch_size",
        "keras_fastrain.batching.search.search_batch_size",
    ),
}


def __getattr__(name):
    if name not in _RENAMED:
        raise AttributeError(f"module 'keras_fastrain.batching' has no attribute {name!r}")
    module, attribute, instead = _RENAMED[name]
    warnings.warn(
        f"keras_fastrain.batching.{name} is deprecated since 0.2.0: use {instead}.",
        DeprecationWarning,
        stacklevel=2,
    )
    import importlib

    return getattr(importlib.import_module(f"keras_fastrain.batching.{module}"), attribute)
