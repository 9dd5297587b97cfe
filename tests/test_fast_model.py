"""FastModel in every Keras style: options, augmentation, saving, errors.

Runs on the backend of the session (the suite runs on TensorFlow and JAX;
the smoke-marked tests also on torch). Multi-device training is in
test_fast_model_devices.py.
"""

import logging

import keras
import numpy as np
import pytest

import keras_fastrain
from keras_fastrain import FastModel, FastSequential
from keras_fastrain.model import FunctionalFastModel, WrappedFastModel

BACKEND = keras.backend.backend()
ROTATE = {"rotation_range": 30, "seed": 1}


def functional(augmentation=None, **options):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8))
    hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    outputs = keras.layers.Dense(10, activation="softmax")(hidden)
    return FastModel(inputs, outputs, augmentation=augmentation, **options)


def compile_for_digits(model, **options):
    model.compile(
        keras.optimizers.Adam(1e-2),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **options,
    )
    return model


@keras.saving.register_keras_serializable(package="tests")
class DigitsNet(FastModel):
    """The subclassing style; `call` takes no `training` argument on purpose."""

    def __init__(self, hidden=32, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(hidden, activation="relu")
        self.classify = keras.layers.Dense(10, activation="softmax")

    def call(self, images):
        return self.classify(self.dense(self.flatten(images)))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


@pytest.mark.smoke
def test_functional_style_returns_a_functional_fast_model_and_leaves_the_class_alone(digits):
    model = functional()
    assert isinstance(model, FunctionalFastModel)
    assert isinstance(model, FastModel) and isinstance(model, keras.Model)
    # keras#17270: Keras would rewrite FastModel's bases for a functional call.
    assert FastModel.__bases__ == (keras.Model,)
    (x, y), (x_test, y_test) = digits
    compile_for_digits(model).fit(x, y, epochs=3, verbose=0)
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.8


@pytest.mark.smoke
def test_subclassed_style_trains_and_gets_a_training_argument(digits):
    (x, y), (x_test, y_test) = digits
    keras.utils.set_random_seed(0)
    model = compile_for_digits(DigitsNet(augmentation=ROTATE))
    model.fit(x, y, epochs=3, verbose=0)
    assert model._call_has_training_arg  # added by FastModel, for the augmentation
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.6


@pytest.mark.smoke
def test_sequential_style_and_wrapping_share_the_same_layers(digits):
    (x, y), _ = digits
    layers = [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    sequential = FastSequential(layers, augmentation=ROTATE)
    assert isinstance(sequential, keras.Sequential) and isinstance(sequential, FastModel)
    compile_for_digits(sequential).fit(x, y, epochs=1, verbose=0)

    plain = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
    wrapped = FastModel(plain)
    assert isinstance(wrapped, WrappedFastModel)
    assert [id(v) for v in wrapped.trainable_variables] == [
        id(v) for v in plain.trainable_variables
    ]
    np.testing.assert_allclose(wrapped.predict(x[:4], verbose=0), plain.predict(x[:4], verbose=0))


@pytest.mark.smoke
def test_every_auto_choice_is_shown_once_with_its_reason_and_readable(capsys):
    model = compile_for_digits(functional())
    compile_for_digits(model)  # the same choices again: not shown twice
    choices = model.choices
    assert set(choices) == {"distribute", "mixed_precision", "jit_compile", "steps_per_execution"}
    assert choices["mixed_precision"].value == "float32"  # CPU
    assert choices["distribute"].value == "none"
    assert model.jit_compile == choices["jit_compile"].value
    assert model.steps_per_execution == choices["steps_per_execution"].value
    lines = [line for line in capsys.readouterr().out.splitlines() if "keras-fastrain:" in line]
    assert len(lines) == 4
    assert all(choice.reason in " ".join(lines) for choice in choices.values())


@pytest.mark.smoke
def test_verbose_0_shows_nothing_and_importing_configures_no_logging(capsys):
    model = compile_for_digits(functional(verbose=0))
    assert set(model.choices) >= {"distribute", "jit_compile"}
    assert "keras-fastrain:" not in capsys.readouterr().out
    handlers = logging.getLogger("keras_fastrain").handlers
    assert all(isinstance(h, logging.NullHandler) for h in handlers)
    assert logging.getLogger("keras_fastrain").propagate


def test_options_given_to_compile_replace_the_constructors():
    model = compile_for_digits(functional(jit_compile=True), jit_compile=False)
    assert model.choices["jit_compile"].value is False
    assert model.jit_compile is False
    assert model.choices["steps_per_execution"].value == (1 if BACKEND == "torch" else 32)


@pytest.mark.smoke
def test_augmentation_acts_in_training_only():
    images = np.random.default_rng(0).uniform(0, 255, (8, 8, 8, 1)).astype("float32")
    inputs = keras.Input((8, 8, 1))
    model = FastModel(inputs, keras.layers.Identity()(inputs), augmentation=ROTATE)
    model.compile(loss="mse")
    trained_view = keras.ops.convert_to_numpy(model(images, training=True))
    assert np.abs(trained_view - images).max() > 1
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(images)), images)
    np.testing.assert_array_equal(model.predict(images, verbose=0), images)
    assert model.evaluate(images, images, verbose=0) == 0.0


def test_seeded_augmentation_makes_training_reproducible(digits):
    (x, y), _ = digits

    def train():
        model = compile_for_digits(functional(augmentation=dict(ROTATE, zoom_range=0.1)))
        return model.fit(x[:512], y[:512], epochs=2, verbose=0).history["loss"]

    first, second = train(), train()
    assert first == second
    unaugmented = compile_for_digits(functional()).fit(x[:512], y[:512], epochs=2, verbose=0)
    assert unaugmented.history["loss"] != first  # the augmentation did change the inputs


@pytest.mark.smoke
def test_a_saved_fast_model_loads_with_its_options_compile_config_and_predictions(digits, tmp_path):
    (x, y), (x_test, _) = digits
    model = compile_for_digits(functional(augmentation=ROTATE))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, FunctionalFastModel)
    np.testing.assert_allclose(
        loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-6
    )
    assert isinstance(loaded.augmentation, keras_fastrain.ImageAugmentation)
    assert loaded.augmentation.get_config() == model.augmentation.get_config()
    assert loaded.compiled and loaded.loss == "sparse_categorical_crossentropy"
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert loaded.choices.keys() == model.choices.keys()
    loaded.fit(x, y, epochs=1, verbose=0)  # trains on from where it was saved


@pytest.mark.parametrize("style", ["subclassed", "sequential", "wrapped"])
def test_every_style_saves_and_loads(style, digits, tmp_path):
    (x, y), (x_test, _) = digits
    layers = [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    model = {
        "subclassed": lambda: DigitsNet(hidden=16, augmentation=ROTATE),
        "sequential": lambda: FastSequential(layers, augmentation=ROTATE),
        "wrapped": lambda: FastModel(keras.Sequential(layers), augmentation=ROTATE),
    }[style]()
    compile_for_digits(model).fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded) is type(model)
    np.testing.assert_allclose(
        loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-6
    )


def test_mixed_precision_given_sets_every_layers_policy(digits):
    (x, y), _ = digits
    model = compile_for_digits(functional(mixed_precision="mixed_bfloat16"))
    assert model.choices["mixed_precision"].changes_results
    assert {layer.compute_dtype for layer in model.layers} == {"bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}
    history = model.fit(x, y, epochs=2, verbose=0).history["loss"]
    assert history[1] < history[0]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"distribute": "gpus"}, ValueError, r"Received: distribute='gpus'"),
        ({"distribute": 3}, TypeError, r"Received: distribute=3"),
        ({"mixed_precision": "fp8"}, ValueError, r"Received: mixed_precision='fp8'"),
        ({"jit_compile": "yes"}, ValueError, r"Received: jit_compile='yes'"),
        ({"steps_per_execution": 0}, ValueError, r"Received: steps_per_execution=0"),
        ({"augmentation": {"rescale": 1 / 255}}, ValueError, r"unknown key\(s\) \['rescale'\]"),
        ({"augmentation": "flip"}, TypeError, r"Received: augmentation='flip'"),
        ({"augmentation": {"rotation_range": -5}}, ValueError, r"rotation_range=-5"),
    ],
)
def test_bad_options_fail_at_construction_naming_the_argument(options, error, message):
    with pytest.raises(error, match=message):
        functional(**options)


def test_augmenting_inputs_that_are_not_images_fails_at_compile():
    inputs = keras.Input((64,))
    model = FastModel(inputs, keras.layers.Dense(10)(inputs), augmentation=ROTATE)
    with pytest.raises(ValueError, match=r"needs batches of images.*\(None, 64\)"):
        model.compile(loss="mse")


def test_a_distribute_name_for_another_backend_is_refused():
    other = "data_parallel" if BACKEND != "jax" else "mirrored"
    with pytest.raises(ValueError, match=rf"distribute='{other}', which needs the"):
        compile_for_digits(functional(distribute=other))


@pytest.mark.parametrize(
    ("environ", "engine"),
    [
        ({}, None),
        ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}}'}, None),
        ({"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:2"]}}'}, "multi_worker"),
        ({"TF_CONFIG": '{"cluster": {"chief": ["a:1"], "worker": ["b:2"]}}'}, "multi_worker"),
        ({"HOROVOD_SIZE": "2", "HOROVOD_RANK": "1"}, "horovod"),
        ({"HOROVOD_SIZE": "1"}, None),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}, "jax_multi_process"),
        ({"JAX_NUM_PROCESSES": "4"}, "jax_multi_process"),
    ],
)
def test_the_launch_is_recognised_from_the_environment(environ, engine):
    from keras_fastrain.distribute import launch_from_environment

    assert launch_from_environment(environ) == engine


def test_two_launches_at_once_are_refused():
    from keras_fastrain.distribute import launch_from_environment

    environ = {"HOROVOD_SIZE": "2", "JAX_NUM_PROCESSES": "2"}
    with pytest.raises(RuntimeError, match=r"several engines at once \(horovod, jax_multi_process"):
        launch_from_environment(environ)


def test_a_multi_worker_engine_for_another_backend_is_refused(monkeypatch):
    name, variable = (
        ("jax_multi_process", "JAX_NUM_PROCESSES")
        if BACKEND != "jax"
        else ("multi_worker", "TF_CONFIG")
    )
    with pytest.raises(ValueError, match=rf"distribute='{name}', which needs the"):
        compile_for_digits(functional(distribute=name))
    value = "2" if variable == "JAX_NUM_PROCESSES" else '{"cluster": {"worker": ["a:1", "b:2"]}}'
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=rf"The {name} engine needs the"):
        compile_for_digits(functional())
    compile_for_digits(functional(distribute=None))  # explicitly one process: allowed


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute strategies are TensorFlow's")
def test_a_strategy_given_while_another_scope_is_active_is_refused():
    import tensorflow as tf

    entered, given = (
        tf.distribute.MirroredStrategy(["/cpu:0"]),
        tf.distribute.OneDeviceStrategy("/cpu:0"),
    )
    with entered.scope():
        model = functional(distribute=given)
        with pytest.raises(ValueError, match=r"MirroredStrategy over .* is already active"):
            compile_for_digits(model)
        same = compile_for_digits(functional())  # "auto" takes the active scope
    assert same.engine.strategy is entered


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution trains on JAX")
def test_a_distribution_given_while_another_is_set_is_refused():
    entered = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    given = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    with entered.scope():
        with pytest.raises(ValueError, match="is already active"):
            compile_for_digits(functional(distribute=given))
        assert compile_for_digits(functional()).engine.distribution is entered


@pytest.mark.smoke
def test_the_callbacks_see_what_fast_model_decided(digits):
    (x, y), (x_test, y_test) = digits
    profiler = keras_fastrain.callbacks.TimingProfiler(batch_size=64, verbose=0)
    stopper = keras_fastrain.callbacks.EarlyStopping(monitor="val_accuracy", target=0.5)
    model = compile_for_digits(functional())
    model.fit(
        x,
        y,
        batch_size=64,
        epochs=20,
        validation_data=(x_test[:352], y_test[:352]),
        callbacks=[profiler, stopper],
        verbose=0,
    )
    summary = profiler.summary()
    assert summary["jit_compile"] == model.choices["jit_compile"].value
    assert summary["steps_per_execution"] == model.choices["steps_per_execution"].value
    assert stopper.stopped_reason == keras_fastrain.callbacks.StopReason.TARGET_REACHED
    assert len(summary["epochs"]) == stopper.stopped_epoch + 1
