"""Label smoothing: the sparse loss Keras lacks, and `FastModel(label_smoothing=...)`."""

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from keras_fastrain.losses import SparseCategoricalCrossentropy
from keras_fastrain.parts.label_smoothing import smoothed_loss
from tests.helpers import digits_model


def _predictions(rows=64, classes=10, seed=0):
    """Random labels and probabilities: a unit test's data."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=rows)
    logits = rng.normal(size=(rows, classes)).astype("float32")
    return labels, keras.ops.convert_to_numpy(keras.ops.softmax(logits))


def _value(loss, y_true, y_pred):
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))


@pytest.mark.smoke
def test_the_sparse_loss_is_kerass_unsmoothed_and_the_categorical_smoothed():
    labels, probabilities = _predictions()
    one_hot = np.eye(10, dtype="float32")[labels]
    assert _value(SparseCategoricalCrossentropy(), labels, probabilities) == pytest.approx(
        _value(keras.losses.SparseCategoricalCrossentropy(), labels, probabilities), rel=1e-6
    )
    for amount in (0.1, 0.3):
        ours = SparseCategoricalCrossentropy(label_smoothing=amount)
        theirs = keras.losses.CategoricalCrossentropy(label_smoothing=amount)
        expected = _value(theirs, one_hot, probabilities)
        assert _value(ours, labels, probabilities) == pytest.approx(expected, rel=1e-5)
        # Labels with a class axis of size 1, as Keras's sparse loss takes them.
        assert _value(ours, labels[:, None], probabilities) == pytest.approx(expected, rel=1e-5)
    smoothed = _value(SparseCategoricalCrossentropy(label_smoothing=0.1), labels, probabilities)
    assert smoothed != pytest.approx(
        _value(keras.losses.SparseCategoricalCrossentropy(), labels, probabilities), rel=1e-3
    )


def test_logits_and_an_ignored_class_are_kept_with_smoothing():
    labels, probabilities = _predictions()
    logits = np.log(probabilities)
    amount = 0.2
    from_logits = SparseCategoricalCrossentropy(from_logits=True, label_smoothing=amount)
    on_probabilities = SparseCategoricalCrossentropy(label_smoothing=amount)
    assert _value(from_logits, labels, logits) == pytest.approx(
        _value(on_probabilities, labels, probabilities), rel=1e-5
    )
    # The ignored class's rows count for nothing, in the mean too.
    ignoring = SparseCategoricalCrossentropy(ignore_class=3, label_smoothing=amount)
    kept = labels != 3
    assert 0 < kept.sum() < len(labels)
    assert _value(ignoring, labels, probabilities) == pytest.approx(
        _value(on_probabilities, labels[kept], probabilities[kept]), rel=1e-5
    )


def test_each_crossentropy_is_smoothed_and_other_losses_are_kept():
    for loss in (
        "categorical_crossentropy",
        "CategoricalCrossentropy",
        keras.losses.categorical_crossentropy,
        keras.losses.CategoricalCrossentropy(from_logits=True),
    ):
        smoothed = smoothed_loss(loss, 0.1)
        assert isinstance(smoothed, keras.losses.CategoricalCrossentropy) or (
            smoothed.fn is keras.losses.categorical_crossentropy
        )
        assert smoothed.get_config()["label_smoothing"] == 0.1
    assert smoothed_loss(keras.losses.CategoricalCrossentropy(from_logits=True), 0.1).get_config()[
        "from_logits"
    ]
    sparse = smoothed_loss(keras.losses.SparseCategoricalCrossentropy(ignore_class=0), 0.2)
    assert isinstance(sparse, SparseCategoricalCrossentropy)
    assert sparse.label_smoothing == 0.2 and sparse.ignore_class == 0
    heads = smoothed_loss({"label": "sparse_categorical_crossentropy", "size": "mse"}, 0.1)
    assert heads["size"] == "mse" and heads["label"].label_smoothing == 0.1
    listed = smoothed_loss(["mse", "binary_crossentropy"], 0.1)
    assert listed[0] == "mse" and listed[1].get_config()["label_smoothing"] == 0.1


def test_a_loss_that_cannot_be_smoothed_is_refused_naming_the_argument():
    for loss in ("mse", keras.losses.MeanSquaredError(), None, ["mae", "mse"], "no_such_loss"):
        with pytest.raises(ValueError, match="label_smoothing"):
            smoothed_loss(loss, 0.1)
    with pytest.raises(ValueError, match="already smooths"):
        smoothed_loss(keras.losses.CategoricalCrossentropy(label_smoothing=0.2), 0.1)
    for amount in (0.0, 1.0, -0.1, float("nan"), "0.1", True):
        with pytest.raises((ValueError, TypeError), match="label_smoothing"):
            FastModel(digits_model(), label_smoothing=amount)
    for amount in (-0.1, 1.5):
        with pytest.raises(ValueError, match="label_smoothing"):
            SparseCategoricalCrossentropy(label_smoothing=amount)
    model = FastModel(digits_model(), label_smoothing=0.1, verbose=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        model.compile("adam", "mse")


def _trained(model, data, epochs):
    (x, y), _ = data
    return model.fit(x, y, epochs=epochs, batch_size=64, shuffle=False, verbose=0).history["loss"]


def test_fast_model_trains_as_keras_does_with_the_smoothed_loss_given_by_hand(digits):
    keras.utils.set_random_seed(0)
    fast = FastModel(digits_model(), label_smoothing=0.1, steps_per_execution=1, verbose=0)
    fast.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    assert fast.choices["label_smoothing"].value == 0.1
    assert fast.choices["label_smoothing"].changes_results
    assert isinstance(fast.loss, SparseCategoricalCrossentropy) and fast.loss.label_smoothing == 0.1
    by_hand = digits_model()
    by_hand.compile(
        keras.optimizers.Adam(1e-3),
        SparseCategoricalCrossentropy(label_smoothing=0.1),
        metrics=["accuracy"],
        steps_per_execution=1,
    )
    np.testing.assert_allclose(_trained(fast, digits, 2), _trained(by_hand, digits, 2), rtol=1e-4)


def test_smoothed_labels_keep_the_predictions_from_saturating(digits):
    # Trained long on 1,797 digits, the plain model's confidence goes to 1;
    # with smoothing 0.2 the loss is lowest at 1 - 0.2 + 0.02 = 0.82 on the
    # true class, so the mean top probability stays near that.
    (x, y), _ = digits
    confidences = {}
    for amount in (None, 0.2):
        keras.utils.set_random_seed(0)
        model = FastModel(digits_model(hidden=64), label_smoothing=amount, verbose=0)
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=30, batch_size=128, verbose=0)
        confidences[amount] = float(np.max(model.predict(x, verbose=0), axis=1).mean())
    assert confidences[None] > 0.97
    assert 0.7 < confidences[0.2] < 0.9


def test_a_smoothing_model_saves_and_loads_back(digits, tmp_path):
    (x, y), (x_test, _) = digits
    model = FastModel(digits_model(), label_smoothing=0.1, verbose=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "smoothed.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, SparseCategoricalCrossentropy)
    assert loaded.loss.label_smoothing == 0.1
    np.testing.assert_allclose(
        loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), rtol=1e-5, atol=1e-6
    )
    loaded.fit(x, y, epochs=1, verbose=0)  # and trains on


def test_the_class_axis_is_kept_and_smoothed_over():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3, 2)).astype("float32")  # classes on axis 1
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 3, size=(4, 2))
    amount = 0.3
    one_hot = np.moveaxis(np.eye(3)[labels], -1, 1)
    smoothed = one_hot * (1 - amount) + amount / 3
    expected = -(smoothed * np.log(probabilities)).sum(axis=1).mean()
    loss = smoothed_loss(keras.losses.SparseCategoricalCrossentropy(axis=1), amount)
    assert isinstance(loss, SparseCategoricalCrossentropy) and loss.axis == 1
    assert _value(loss, labels, probabilities) == pytest.approx(expected, rel=1e-5)
    loaded = keras.losses.deserialize(keras.losses.serialize(loss))
    assert loaded.axis == 1 and loaded.label_smoothing == amount
    assert _value(loaded, labels, probabilities) == pytest.approx(expected, rel=1e-5)
