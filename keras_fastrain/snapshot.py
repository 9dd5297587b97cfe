"""`ModelSnapshot`: a model's state, to put back after a measurement.

The batch-size and learning-rate finders train a model for a few steps to
measure it; the user's model must come out exactly as it went in. A
snapshot holds the values of the model's, its optimizer's (slots,
iterations, learning rate) and its metrics' variables, and the global NumPy
and Python random states, so that a measurement leaves the user's random
draws where they were. (TensorFlow's per-operation seeds, and the draw
Keras makes when a model's first fit builds it, are not put back: a fit
after a search can shuffle differently from one without it.)
"""

import random

import keras
import numpy as np

from keras_fastrain.devices import host_array

__all__ = ["ModelSnapshot"]


class ModelSnapshot:
    """The values of a compiled model's and its optimizer's variables.

    Builds the model (on one sample of `x`) and its optimizer first if they
    are not built yet, so that every variable exists when it is taken.

    Args:
        model: A compiled `keras.Model`.
        x: The model's inputs (arrays, or a list/dict of arrays), for
            building an unbuilt model.

    Example:

    ```python
    snapshot = keras_fastrain.snapshot.ModelSnapshot(model, x_train)
    model.fit(x_train, y_train, epochs=1)  # a measurement
    snapshot.restore()  # the model as it was
    ```
    """

    def __init__(self, model, x):
        if not model.built:
            model(keras.tree.map_structure(lambda a: a[:1], x))
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        self.model = model
        self.variables = list(model.variables) + list(model.optimizer.variables)
        self.values = [host_array(v).copy() for v in self.variables]
        self.random_states = (np.random.get_state(), random.getstate())

    def restore(self):
        """Puts every variable and the global random states back to what
        they were when the snapshot was taken, and resets the metrics."""
        for variable, value in zip(self.variables, self.values, strict=True):
            variable.assign(value)
        self.model.reset_metrics()
        np.random.set_state(self.random_states[0])
        random.setstate(self.random_states[1])
