"""FastModel and its Keras styles.

- `fast_model.py`: `FastModel`, the wiring: it hands each call to the parts
  (`keras_fastrain.parts`) in order, then calls Keras.
- `styles.py`: `FunctionalFastModel` (what `FastModel(inputs, outputs)`
  builds), `WrappedFastModel` (`FastModel(model)`) and `FastSequential`.
"""

from keras_fastrain.model.fast_model import FastModel
from keras_fastrain.model.styles import FastSequential, FunctionalFastModel, WrappedFastModel

__all__ = ["FastModel", "FastSequential", "FunctionalFastModel", "WrappedFastModel"]
