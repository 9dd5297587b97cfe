"""FastModel's input pipeline: input overlaps the step, fit's semantics stay."""

import threading
import time

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from keras_fastrain.parts.input_pipeline import input_threads, tune_input

tf = pytest.importorskip("tensorflow")


class DigitBatches(keras.utils.PyDataset):
    """Digits in batches of 64, each taking 10 ms to "read"; records how many
    batches were being loaded at the same time."""

    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y
        self.loading = self.most_at_once = 0
        self.lock = threading.Lock()

    def __len__(self):
        return len(self.x) // 64

    def __getitem__(self, index):
        with self.lock:
            self.loading += 1
            self.most_at_once = max(self.most_at_once, self.loading)
        time.sleep(0.01)
        with self.lock:
            self.loading -= 1
        rows = slice(index * 64, (index + 1) * 64)
        return self.x[rows], self.y[rows]


def digits_model(cls=keras.Model, **options):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    outputs = keras.layers.Dense(10, activation="softmax")(hidden)
    model = cls(inputs, outputs, **options)
    # Same numerics on both sides: one step per call; XLA only on JAX (which
    # without it runs op by op).
    model.compile(
        keras.optimizers.Adam(1e-2),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=keras.backend.backend() == "jax",
        steps_per_execution=1,
    )
    return model


def test_arrays_pass_through_untouched():
    x = np.zeros((4, 8, 8))
    assert tune_input(x) == (x, None)
    assert tune_input(None) == (None, None)


def test_a_tf_dataset_is_prefetched_and_yields_the_same_batches(digits):
    (x, y), _ = digits
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).map(lambda a, b: (a * 2, b)).batch(50)
    tuned, choice = tune_input(dataset)
    assert "prefetch" in choice.value and choice.reason
    for (a, b), (c, d) in zip(dataset, tuned, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow's PyDataset path; see below"
)
def test_a_py_dataset_loads_batches_in_parallel_during_fit_and_is_given_back(digits):
    (x, y), _ = digits
    plain_data, fast_data = DigitBatches(x, y), DigitBatches(x, y)
    # shuffle=False: Keras shuffles batch order in both ways, with different draws.
    plain = digits_model().fit(plain_data, epochs=2, shuffle=False, verbose=0).history
    model = digits_model(FastModel)
    fast = model.fit(fast_data, epochs=2, shuffle=False, verbose=0).history
    assert plain_data.most_at_once == 1
    assert fast_data.most_at_once >= 2
    assert fast_data.workers == 1  # restored
    assert model.choices["input_pipeline"].value == f"PyDataset in {input_threads()} threads"
    np.testing.assert_allclose(plain["loss"], fast["loss"], rtol=1e-5)  # same batches, same order


class NumberedBatches(DigitBatches):
    """Batch i holds the value i in every pixel."""

    def __getitem__(self, index):
        images, labels = super().__getitem__(index)
        return np.full_like(images, float(index)), labels


def batches_trained_on(model_class, data, epochs=2):
    seen = []

    class Recording(model_class):
        def train_step(self, *args):
            batch = args[-1]  # JAX passes (state, data)
            seen.append(int(keras.ops.convert_to_numpy(batch[0])[0, 0, 0]))
            return super().train_step(*args)

    inputs = keras.Input((8, 8))
    model = Recording(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    model.compile("sgd", "sparse_categorical_crossentropy", run_eagerly=True)
    model.fit(data, epochs=epochs, shuffle=False, verbose=0)
    return seen


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="JAX and torch only")
def test_threaded_py_datasets_are_not_used_where_keras_serves_the_wrong_batches(digits):
    (x, y), _ = digits
    in_order = list(range(22)) * 2
    # The Keras behaviour that keeps FastModel from threading here:
    assert batches_trained_on(keras.Model, NumberedBatches(x, y, workers=2)) != in_order
    data = NumberedBatches(x, y)
    assert batches_trained_on(keras.Model, data) == in_order
    assert tune_input(data) == (data, None)


def test_input_pipeline_none_uses_the_data_as_given(digits):
    (x, y), _ = digits
    data = DigitBatches(x, y)
    model = digits_model(FastModel, input_pipeline=None)
    model.fit(data, epochs=1, verbose=0)
    assert data.most_at_once == 1
    assert "input_pipeline" not in model.choices


def test_fit_keeps_kerass_semantics_for_splits_weights_and_validation_data(digits):
    (x, y), (x_val, y_val) = digits
    weights = np.linspace(0.5, 1.5, len(x))
    class_weight = {label: 1.0 + label / 10 for label in range(10)}
    validation = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(64)

    def run(cls):
        model = digits_model(cls)
        split = model.fit(
            x, y, sample_weight=weights, validation_split=0.25, epochs=2, shuffle=False, verbose=0
        ).history
        given = model.fit(
            x, y, class_weight=class_weight, validation_data=validation, epochs=2, verbose=0
        ).history
        return split, given

    for plain, fast in zip(run(keras.Model), run(FastModel), strict=True):
        assert plain.keys() == fast.keys()
        for key in plain:
            np.testing.assert_allclose(plain[key], fast[key], rtol=1e-5, err_msg=key)


def test_input_pipeline_takes_auto_or_none():
    with pytest.raises(ValueError, match=r"Received: input_pipeline='fast'"):
        digits_model(FastModel, input_pipeline="fast")
