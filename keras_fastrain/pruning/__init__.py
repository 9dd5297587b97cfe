"""Pruning for Keras 3 with tfmot's names and arithmetic, on every backend.

tensorflow-model-optimization rejects Keras 3 models (tfmot#1119). This
package gives its pruning back, written with `keras.ops`:

- `schedules.py`: `ConstantSparsity`, `PolynomialDecay` (and any object
  called the same way, such as a tfmot schedule);
- `masks.py`: magnitude, block and M-by-N (2:4) masks;
- `registry.py`: which layers prune which weights (`PrunableLayer`);
- `wrapper.py`: `PruneLowMagnitude`, the layer that trains through a mask;
- `prune.py`: `prune_low_magnitude`, `strip_pruning`, `prune_scope` and
  `collect_prunable_layers`;
- `policy.py`: `PruningPolicy`, which layers a model may prune;
- `callbacks.py`: `UpdatePruningStep` and `PruningSummaries`;
- `report.py`: per-weight sparsity, gzipped size, int8 quantization.
"""

from keras_fastrain.pruning.callbacks import PruningSummaries, UpdatePruningStep
from keras_fastrain.pruning.masks import block_mask, m_by_n_mask, magnitude_mask
from keras_fastrain.pruning.policy import PruningPolicy
from keras_fastrain.pruning.prune import (
    collect_prunable_layers,
    prune_low_magnitude,
    prune_scope,
    strip_pruning,
)
from keras_fastrain.pruning.registry import PrunableLayer
from keras_fastrain.pruning.report import (
    CompressionReport,
    compression_report,
    gzipped_weights_size,
    weight_sparsity,
)
from keras_fastrain.pruning.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from keras_fastrain.pruning.wrapper import PruneLowMagnitude

__all__ = [
    "CompressionReport",
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneLowMagnitude",
    "PruningPolicy",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "block_mask",
    "collect_prunable_layers",
    "compression_report",
    "gzipped_weights_size",
    "m_by_n_mask",
    "magnitude_mask",
    "prune_low_magnitude",
    "prune_scope",
    "strip_pruning",
    "weight_sparsity",
]
