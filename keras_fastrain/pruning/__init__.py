"""Pruning for Keras 3 with tfmot's names and arithmetic, on every backend.

tensorflow-model-optimization rejects Keras 3 models (tfmot#1119). This
package gives its pruning back, written with `keras.ops`:

- `schedules.py`: `ConstantSparsity`, `PolynomialDecay` (and any object
  called the same way, such as a tfmot schedule);
- `masks.py`: magnitude, block and M-by-N (2:4) masks.
"""

from keras_fastrain.pruning.masks import block_mask, m_by_n_mask, magnitude_mask
from keras_fastrain.pruning.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "block_mask",
    "m_by_n_mask",
    "magnitude_mask",
]
