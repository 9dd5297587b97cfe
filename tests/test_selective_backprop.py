"""Selective backprop: each step trains on the highest-loss share of its batch."""

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from keras_fastrain.callbacks import SelectiveBackprop
from keras_fastrain.callbacks.selective_backprop import per_sample_loss
from tests.helpers import digits_model


def _model(steps_per_execution=1):
    model = digits_model()  # seeded
    model.compile(
        keras.optimizers.SGD(0.1),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model


def _weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]


def _hardest_rows(model, x, y, keep):
    losses = keras.ops.convert_to_numpy(per_sample_loss(model.loss)(y, model.predict(x, verbose=0)))
    return np.sort(np.argsort(-losses, kind="stable")[: int(np.ceil(keep * len(x)))])


@pytest.mark.smoke
def test_a_selecting_step_is_kerass_step_on_the_hardest_rows(digits):
    (x, y), _ = digits
    x, y = x[:64], y[:64]
    selective = _model()
    rows = _hardest_rows(selective, x, y, keep=0.25)
    callback = SelectiveBackprop(keep=0.25)
    selective.fit(x, y, batch_size=64, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    by_hand = _model()
    by_hand.fit(x[rows], y[rows], batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert callback.selected_calls == 1 and len(rows) == 16
    for a, b in zip(_weights(selective), _weights(by_hand), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Trained on the other rows instead, the weights differ: the pick matters.
    others = np.setdiff1d(np.arange(64), rows)[:16]
    elsewhere = _model()
    elsewhere.fit(x[others], y[others], batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert not np.allclose(_weights(elsewhere)[0], _weights(selective)[0], atol=1e-6)


@pytest.mark.smoke
def test_after_the_fit_keras_trains_on_whole_batches_again(digits):
    (x, y), _ = digits
    x, y = x[:64], y[:64]
    model = _model()
    model.fit(x, y, batch_size=64, epochs=1, callbacks=[SelectiveBackprop()], verbose=0)
    assert "train_step" not in vars(model)
    plain = _model()
    plain.fit(x, y, batch_size=64, epochs=1, verbose=0)  # the same start...
    model.set_weights(plain.get_weights())
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    plain.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(_weights(model), _weights(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_steps_select_within_their_window_and_interval(digits, steps_per_execution):
    if keras.backend.backend() == "torch" and steps_per_execution > 1:
        pytest.skip("PyTorch's Keras trainer runs one step per call")
    (x, y), _ = digits
    x, y = x[:512], y[:512]  # 16 steps of 32 an epoch
    callback = SelectiveBackprop(keep=0.5, start=0.5, end=1.0, interval=2)
    model = _model(steps_per_execution)
    model.fit(x, y, batch_size=32, epochs=4, callbacks=[callback], verbose=0)
    calls_per_epoch = 16 // steps_per_execution
    # Epochs 3 and 4 are the window; every other call in it selects.
    assert callback.selected_calls == calls_per_epoch
    assert int(model.optimizer.iterations) == 64


def test_zero_weight_samples_are_never_the_hardest(digits):
    (x, y), _ = digits
    x, y = x[:64], y[:64]
    weights = np.zeros(64, "float32")
    weights[::2] = 1.0  # half the rows count
    model = _model()
    rows = _hardest_rows(model, x[::2], y[::2], keep=0.5)  # among those that count
    model.fit(
        x,
        y,
        sample_weight=weights,
        batch_size=64,
        epochs=1,
        shuffle=False,
        callbacks=[SelectiveBackprop(keep=0.25)],
        verbose=0,
    )
    by_hand = _model()
    by_hand.fit(x[::2][rows], y[::2][rows], batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(_weights(model), _weights(by_hand), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bad_arguments_and_losses_are_refused_by_name(digits):
    for name, value in [
        ("keep", 0.0),
        ("keep", 1.0),
        ("keep", float("nan")),
        ("start", 1.0),
        ("interval", 0),
    ]:
        with pytest.raises((ValueError, TypeError), match=name):
            SelectiveBackprop(**{name: value})
    with pytest.raises(ValueError, match="end"):
        SelectiveBackprop(start=0.5, end=0.5)
    for loss in (None, {"a": "mse"}, ["mse"]):
        with pytest.raises(ValueError, match="one loss"):
            per_sample_loss(loss)
    if keras.backend.backend() == "tensorflow":  # elsewhere Keras fails first, on y=None
        (x, _), _ = digits
        with pytest.raises(ValueError, match="no labels"):
            _model().fit(x[:64], epochs=1, callbacks=[SelectiveBackprop()], verbose=0)


def test_fast_model_adds_the_callback_and_checks_the_loss_at_compile(digits):
    (x, y), _ = digits
    x, y = x[:64], y[:64]
    model = FastModel(digits_model(), selective_backprop=0.25, verbose=0)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    choice = model.choices["selective_backprop"]
    assert choice.value == 0.25 and choice.changes_results
    rows = _hardest_rows(model, x, y, keep=0.25)
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    by_hand = _model()
    by_hand.fit(x[rows], y[rows], batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(_weights(model), _weights(by_hand), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # A SelectiveBackprop of the user's own is the one that selects.
    model = FastModel(digits_model(), selective_backprop=0.25, verbose=0)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    rows = _hardest_rows(model, x, y, keep=0.75)
    own = SelectiveBackprop(keep=0.75)
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, callbacks=[own], verbose=0)
    by_hand = _model()
    by_hand.fit(x[rows], y[rows], batch_size=48, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(_weights(model), _weights(by_hand), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fast_model_refuses_a_bad_share_or_loss_naming_the_argument():
    for value in (0.0, 1.5, "half"):
        with pytest.raises((ValueError, TypeError), match="selective_backprop"):
            FastModel(digits_model(), selective_backprop=value)
    two_heads = FastModel(digits_model(), selective_backprop=True, verbose=0)
    with pytest.raises(ValueError, match="selective_backprop"):
        two_heads.compile("sgd", ["sparse_categorical_crossentropy", "mse"])


def test_a_failing_selecting_call_leaves_kerass_step_behind(digits):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("elsewhere Keras fails on y=None before the step runs")
    (x, y), _ = digits
    model = _model()
    with pytest.raises(ValueError, match="no labels"):
        model.fit(x[:64], epochs=1, callbacks=[SelectiveBackprop()], verbose=0)
    assert "train_step" not in vars(model)
    # The next plain fit trains on whole batches, as a fresh model does.
    model.set_weights(_model().get_weights())
    model.fit(x[:64], y[:64], batch_size=64, epochs=1, shuffle=False, verbose=0)
    plain = _model()
    plain.fit(x[:64], y[:64], batch_size=64, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(_weights(model), _weights(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_losses_by_name_match_kerass_for_each_sample():
    rng = np.random.default_rng(0)
    # Binary labels without the output's unit axis, as Keras accepts them.
    labels = rng.integers(0, 2, size=8).astype("float32")
    probabilities = rng.uniform(0.05, 0.95, size=(8, 1)).astype("float32")
    expected = keras.losses.BinaryCrossentropy(reduction=None)(labels[:, None], probabilities)
    for name in ("binary_crossentropy", "crossentropy"):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(per_sample_loss(name)(labels, probabilities)),
            keras.ops.convert_to_numpy(expected),
            rtol=1e-5,
        )
    classes = rng.integers(0, 4, size=8)
    softmax = keras.ops.convert_to_numpy(keras.ops.softmax(rng.normal(size=(8, 4))))
    sparse = keras.losses.SparseCategoricalCrossentropy(reduction=None)(classes, softmax)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(per_sample_loss("ce")(classes, softmax)),
        keras.ops.convert_to_numpy(sparse),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="unknown loss"):
        per_sample_loss("no_such_loss")
