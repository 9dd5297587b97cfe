"""Layer freezing: the first layers stop training late in a fit."""

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from keras_fastrain.callbacks import LayerFreezing


def _model(optimizer="sgd"):
    """A seeded three-layer classifier for scikit-learn's 8x8 digits."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer, "sparse_categorical_crossentropy")
    return model


def _layer_weights(model):
    return [
        [keras.ops.convert_to_numpy(v) for v in layer.weights]
        for layer in model.layers
        if layer.weights
    ]


def _same(a, b):
    return all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a, b, strict=True))


class _EpochWeights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(_layer_weights(self.model))


@pytest.mark.smoke
def test_a_frozen_step_is_kerass_step_with_those_layers_frozen(digits):
    (x, y), _ = digits
    x, y = x[:256], y[:256]
    freezing = _model(keras.optimizers.Adam(1e-2))
    callback = LayerFreezing(freeze_start=0.0, stages=1)  # all but the last, from the start
    freezing.fit(x, y, batch_size=32, epochs=2, shuffle=False, callbacks=[callback], verbose=0)
    by_hand = _model(keras.optimizers.Adam(1e-2))
    for layer in by_hand.layers[:-1]:
        layer.trainable = False
    by_hand.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    by_hand.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert callback.stages_run == [0, 2] and callback.frozen == 2
    for a, b in zip(_layer_weights(freezing), _layer_weights(by_hand), strict=True):
        for left, right in zip(a, b, strict=True):
            np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-6)
    # The first layers never moved; the fit ends with every layer trainable.
    assert _same(_layer_weights(freezing)[0], _layer_weights(_model())[0])
    assert all(layer.trainable for layer in freezing.layers)
    assert len(freezing.trainable_weights) == 6 and "train_step" not in vars(freezing)


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_layers_freeze_stage_by_stage_and_train_again_after_the_fit(digits, steps_per_execution):
    if keras.backend.backend() == "torch" and steps_per_execution > 1:
        pytest.skip("PyTorch's Keras trainer runs one step per call")
    (x, y), _ = digits
    x, y = x[:512], y[:512]  # 16 steps of 32 an epoch
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy", steps_per_execution=steps_per_execution)
    callback = LayerFreezing(freeze_start=0.5, stages=2)
    seen = _EpochWeights()
    model.fit(x, y, batch_size=32, epochs=4, callbacks=[callback, seen], verbose=0)
    # Epoch 3 freezes the first layer, epoch 4 the second; the last trains on.
    weights = seen.seen
    assert callback.stages_run == [0, 1, 2]
    assert not _same(weights[0][0], weights[1][0]) and _same(weights[1][0], weights[3][0])
    assert not _same(weights[1][1], weights[2][1]) and _same(weights[2][1], weights[3][1])
    assert not _same(weights[2][2], weights[3][2])
    # Every layer trains in the next fit.
    before = _layer_weights(model)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert not any(_same(a, b) for a, b in zip(before, _layer_weights(model), strict=True))


def test_a_layer_the_user_froze_stays_frozen(digits):
    (x, y), _ = digits
    model = _model()
    model.layers[2].trainable = False  # the second Dense
    model.layers[1].bias.trainable = False  # and the first one's bias
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x[:128], y[:128], epochs=2, callbacks=[LayerFreezing(freeze_start=0.0)], verbose=0)
    assert [layer.trainable for layer in model.layers] == [True, True, False, True]
    assert model.layers[1].kernel.trainable and not model.layers[1].bias.trainable


def test_bad_arguments_and_models_are_refused_by_name(digits):
    for name, value in [
        ("freeze_start", 1.0),
        ("freeze_start", -0.1),
        ("freeze_level", 0.0),
        ("freeze_level", float("nan")),
        ("stages", 0),
    ]:
        with pytest.raises((ValueError, TypeError), match=name):
            LayerFreezing(**{name: value})
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    single = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
    single.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="LayerFreezing freezes"):
        single.fit(x[:64], y[:64], epochs=1, callbacks=[LayerFreezing()], verbose=0)


def test_fast_model_adds_the_callback(digits):
    (x, y), _ = digits
    x, y = x[:256], y[:256]
    model = FastModel(_model(), layer_freezing=0.0, steps_per_execution=1, verbose=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    choice = model.choices["layer_freezing"]
    assert choice.value == 0.0 and choice.changes_results
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    by_hand = _model()
    by_hand.fit(
        x,
        y,
        batch_size=32,
        epochs=1,
        shuffle=False,
        callbacks=[LayerFreezing(freeze_start=0.0)],
        verbose=0,
    )
    assert _same(model.get_weights(), by_hand.get_weights())
    for value in (1.0, -0.5, "late"):
        with pytest.raises((ValueError, TypeError), match="layer_freezing"):
            FastModel(_model(), layer_freezing=value)
    two = FastModel(_model(), layer_freezing=True, selective_backprop=0.5)
    with pytest.raises(ValueError, match="layer_freezing"):
        two.compile("sgd", "sparse_categorical_crossentropy")


def test_ema_is_refused_and_a_wrapped_model_with_augmentation_freezes_its_layers(digits):
    (x, y), _ = digits
    x, y = x[:128], y[:128]
    with_ema = _model(keras.optimizers.Adam(use_ema=True))
    with pytest.raises(ValueError, match="use_ema"):
        with_ema.fit(x, y, epochs=1, callbacks=[LayerFreezing()], verbose=0)
    assert all(layer.trainable for layer in with_ema.layers)
    with pytest.raises(ValueError, match="layer_freezing"):
        FastModel(_model(), ema=True, layer_freezing=True).compile(
            "adam", "sparse_categorical_crossentropy"
        )
    # FastModel(model, augmentation=...) holds the model next to its
    # augmentation: the layers frozen are the model's.
    images = x[..., None]
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model = FastModel(inner, augmentation={"rotation_range": 5}, layer_freezing=0.0, verbose=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    callback = LayerFreezing(freeze_start=0.0, stages=1)
    model.fit(images, y, batch_size=32, epochs=1, callbacks=[callback], verbose=0)
    assert callback.stages_run == [0, 1]


def test_a_fit_that_fails_leaves_no_layer_frozen_for_the_next(digits):
    (x, y), _ = digits
    x, y = x[:128], y[:128]

    class Fails(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("stopped from outside the step")

    model = FastModel(_model(), steps_per_execution=1, verbose=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    freezing = LayerFreezing(freeze_start=0.0, stages=1)
    with pytest.raises(RuntimeError, match="from outside"):
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[freezing, Fails()], verbose=0)
    assert len(model.trainable_weights) == 6  # FastModel put them back as the fit failed
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert len(model.trainable_weights) == 6
    # A plain model: the next fit with LayerFreezing puts them back first.
    plain = _model()
    with pytest.raises(RuntimeError, match="from outside"):
        plain.fit(x, y, batch_size=32, epochs=1, callbacks=[freezing, Fails()], verbose=0)
    assert len(plain.trainable_weights) == 2
    again = LayerFreezing(freeze_start=0.9)
    plain.fit(x, y, batch_size=32, epochs=1, callbacks=[again], verbose=0)
    assert again.stages_run == [0] and len(plain.trainable_weights) == 6


class _Tripwire(keras.layers.Layer):
    """Passes its input through; fails a step traced while armed."""

    armed = False

    def call(self, inputs):
        if _Tripwire.armed:
            raise RuntimeError("a step traced while armed")
        return inputs


def test_a_failing_frozen_step_puts_the_layers_and_their_values_back(digits):
    (x, y), _ = digits
    x, y = x[:128], y[:128]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            _Tripwire(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    after_first_epoch = []

    def arm(epoch, logs):
        after_first_epoch.extend(model.get_weights())
        _Tripwire.armed = True  # the frozen step of epoch 2 is traced anew, and fails

    try:
        with pytest.raises(RuntimeError, match="traced while armed"):
            model.fit(
                x,
                y,
                batch_size=32,
                epochs=2,
                callbacks=[
                    LayerFreezing(freeze_start=0.5, stages=1),
                    keras.callbacks.LambdaCallback(on_epoch_end=arm),
                ],
                verbose=0,
            )
    finally:
        _Tripwire.armed = False
    assert len(model.trainable_weights) == 6 and "train_step" not in vars(model)
    for now, then in zip(model.get_weights(), after_first_epoch, strict=True):
        np.testing.assert_array_equal(now, then)  # the values, each in its place
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # and it trains on
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_a_model_without_input_is_frozen_once_its_first_step_built_it(digits):
    (x, y), _ = digits
    x, y = x[:128], y[:128]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    callback = LayerFreezing(freeze_start=0.0, stages=1)
    model.fit(x, y, batch_size=32, epochs=2, callbacks=[callback], verbose=0)
    assert callback.stages_run == [0, 1] and len(model.trainable_weights) == 4
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # the optimizer knows every variable
