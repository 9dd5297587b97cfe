"""The learning rate, measured on the user's model.

- `LearningRateFinder` (`finder.py`): the learning-rate range test, bounded
  in steps and time, on a compiled model and its data; it returns a
  `LearningRateSearch` with the curve and the suggested rate, and leaves
  the model as it was.
"""

from keras_fastrain.learning_rate.finder import LearningRateFinder, LearningRateSearch

__all__ = ["LearningRateFinder", "LearningRateSearch"]
