"""tfmot's pruning API as its documentation describes it, on Keras 3.

Each test states one part of `tfmot.sparsity.keras`'s contract (names,
accepted inputs, return types, attributes) and trains for real on the
digits where behaviour is at stake.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_fastrain.pruning import (
    ConstantSparsity,
    PolynomialDecay,
    PrunableLayer,
    PruneLowMagnitude,
    PruningPolicy,
    PruningSchedule,
    PruningSummaries,
    UpdatePruningStep,
    collect_prunable_layers,
    prune_low_magnitude,
    prune_scope,
    strip_pruning,
)

pytestmark = pytest.mark.smoke


def values(variable):
    return keras.ops.convert_to_numpy(variable.value)


def fit(model, digits, epochs=2, callbacks=None):
    (x, y), _ = digits
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=callbacks)
    return model


def mask_sparsity(wrapper):
    return [float(np.mean(values(mask) == 0)) for mask in wrapper.masks]


def test_a_list_of_layers_gives_a_list_of_wrappers():
    layers = [keras.layers.Dense(4), keras.layers.Conv2D(2, 3)]
    wrapped = prune_low_magnitude(layers, ConstantSparsity(0.5, 0))
    assert isinstance(wrapped, list) and [w.layer for w in wrapped] == layers
    assert all(isinstance(w, PruneLowMagnitude) for w in wrapped)


def test_the_wrapper_has_tfmots_pruning_step_and_pruning_vars():
    wrapper = prune_low_magnitude(keras.layers.Dense(3))
    wrapper.build((None, 5))
    assert int(values(wrapper.pruning_step)) == -1  # tfmot's value before training
    ((weight, mask, threshold),) = wrapper.pruning_vars
    assert weight is wrapper.layer.kernel
    assert tuple(mask.shape) == (5, 3) and tuple(threshold.shape) == ()


@pytest.mark.parametrize(
    "layer",
    [
        keras.layers.Dropout(0.2),
        keras.layers.MaxPooling1D(),
        keras.layers.Flatten(),
        keras.layers.BatchNormalization(),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layers_without_prunable_weights_can_be_wrapped_and_run_unchanged(layer):
    wrapper = prune_low_magnitude(layer)
    inputs = np.random.default_rng(0).normal(size=(4, 6, 2)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(wrapper(inputs)), keras.ops.convert_to_numpy(layer(inputs))
    )
    assert wrapper.pruning_vars == []


def test_batch_normalization_in_a_wrapper_still_learns_its_statistics(digits):
    inputs = keras.Input((8, 8))
    hidden = keras.layers.Dense(16)(keras.layers.Flatten()(inputs))
    normal = prune_low_magnitude(keras.layers.BatchNormalization())
    model = keras.Model(inputs, keras.layers.Dense(10, "softmax")(normal(hidden)))
    fit(model, digits, epochs=1)
    assert np.abs(values(normal.layer.moving_mean)).sum() > 0


@pytest.mark.parametrize("rnn", [keras.layers.SimpleRNN, keras.layers.GRU, keras.layers.LSTM])
def test_recurrent_layers_prune_both_kernels(rnn, digits):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8)), rnn(16), keras.layers.Dense(10, "softmax")])
    pruned = prune_low_magnitude(model, ConstantSparsity(0.5, begin_step=0, frequency=1))
    fit(pruned, digits, epochs=1)
    (wrapper,) = [w for w in collect_prunable_layers(pruned) if isinstance(w.layer, rnn)]
    assert [w.path.split("/")[-1] for w, _, _ in wrapper.pruning_vars] == [
        "kernel",
        "recurrent_kernel",
    ]
    assert mask_sparsity(wrapper) == pytest.approx([0.5, 0.5], abs=0.01)


def test_a_nested_model_is_pruned_inside_as_tfmot_recurses(digits):
    inner = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu")])
    outer = keras.Sequential(
        [keras.Input((8, 8)), keras.layers.Flatten(), inner, keras.layers.Dense(10, "softmax")]
    )
    pruned = prune_low_magnitude(outer, ConstantSparsity(0.5, begin_step=0, frequency=1))
    wrappers = collect_prunable_layers(pruned)
    assert sorted(w.layer.name for w in wrappers) == sorted(
        [inner.layers[0].name, outer.layers[-1].name]
    )
    fit(pruned, digits, epochs=1)
    stripped = strip_pruning(pruned)
    assert not collect_prunable_layers(stripped)
    kernel = keras.ops.convert_to_numpy(stripped.layers[1].layers[0].kernel.value)
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.01)


def test_a_layer_it_cannot_prune_is_named_in_a_warning():
    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return inputs * self.scale

    model = keras.Sequential([keras.Input((4,)), Scale(name="scale"), keras.layers.Dense(2)])
    with pytest.warns(UserWarning, match=r"left 1 layer.*scale \(Scale\).*get_prunable_weights"):
        prune_low_magnitude(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Dropout has no weights: nothing to say
        prune_low_magnitude(
            keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.1), keras.layers.Dense(2)])
        )


def test_a_prunable_layer_says_which_weights_to_prune(digits):
    class PrunedKernelOnly(keras.layers.Dense, PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]

    model = keras.Sequential(
        [keras.Input((8, 8)), keras.layers.Flatten(), PrunedKernelOnly(10, activation="softmax")]
    )
    pruned = prune_low_magnitude(model, ConstantSparsity(0.5, begin_step=0, frequency=1))
    fit(pruned, digits, epochs=1)
    (wrapper,) = collect_prunable_layers(pruned)
    assert [w.path.split("/")[-1] for w, _, _ in wrapper.pruning_vars] == ["kernel"]
    with pytest.raises(NotImplementedError, match="get_prunable_weights"):
        PrunableLayer().get_prunable_weights()


def test_a_pruning_policy_chooses_the_layers_and_may_refuse_the_model():
    class FirstDenseOnly(PruningPolicy):
        def allow_pruning(self, layer):
            return layer.name == "first"

    class Refuse(PruningPolicy):
        def ensure_model_supports_pruning(self, model):
            raise ValueError(f"{model.name} is not supported")

    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="first"), keras.layers.Dense(2)]
    )
    pruned = prune_low_magnitude(model, pruning_policy=FirstDenseOnly())
    assert [w.layer.name for w in collect_prunable_layers(pruned)] == ["first"]
    with pytest.raises(ValueError, match="is not supported"):
        prune_low_magnitude(model, pruning_policy=Refuse())
    with pytest.raises(TypeError, match=r"`pruning_policy`.*Received: pruning_policy='all'"):
        prune_low_magnitude(model, pruning_policy="all")


def test_prune_scope_loads_a_pruned_model(digits, tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
    pruned = fit(prune_low_magnitude(model, PolynomialDecay(0.0, 0.5, 0, 20, frequency=5)), digits)
    pruned.save(tmp_path / "pruned.keras")
    with prune_scope():
        loaded = keras.models.load_model(tmp_path / "pruned.keras")
    (x, _), _ = digits
    np.testing.assert_allclose(
        loaded.predict(x[:8], verbose=0), pruned.predict(x[:8], verbose=0), rtol=1e-5
    )
    (wrapper,) = collect_prunable_layers(loaded)
    assert int(values(wrapper.pruning_step)) == int(values(pruned.layers[1].pruning_step))


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: PruningSummaries(log_dir=""), ValueError, r"`log_dir`.*Received: log_dir=''"),
        (
            lambda: prune_low_magnitude(keras.layers.Dense(2), pruning_schedule={}),
            ValueError,
            r"`pruning_schedule`.*Received: pruning_schedule=\{\}",
        ),
        (
            lambda: PruneLowMagnitude(keras.layers.Dense(2), pruning_schedule=0.5),
            TypeError,
            r"`pruning_schedule`.*Received: pruning_schedule=0\.5",
        ),
        (lambda: strip_pruning("abc"), TypeError, r"`model`.*Received: model='abc'"),
        (lambda: collect_prunable_layers(None), TypeError, r"`model`.*Received: model=None"),
        (lambda: prune_low_magnitude("abc"), TypeError, r"`to_prune`.*Received: to_prune='abc'"),
        (
            lambda: prune_low_magnitude([keras.layers.Dense(2)], layers=["dense"]),
            ValueError,
            r"Received layers=\['dense'\].*list of layers",
        ),
    ],
)
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_schedule_without_a_tensor_rule_asks_for_the_callback(digits):
    class Halfway(PruningSchedule):  # the documented way: a host rule only
        def __init__(self):
            self.begin_step, self.end_step, self.frequency = 0, -1, 5
            self._config = {}

        def sparsity(self, step):
            return 0.5

    def model():
        return keras.Sequential(
            [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
        )

    with pytest.raises(ValueError, match=r"cannot run inside the training step.*UpdatePruningStep"):
        fit(prune_low_magnitude(model(), Halfway()), digits, epochs=1)
    pruned = fit(prune_low_magnitude(model(), Halfway()), digits, callbacks=[UpdatePruningStep()])
    assert mask_sparsity(collect_prunable_layers(pruned)[0]) == pytest.approx([0.5], abs=0.01)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a GradientTape loop")
def test_a_gradient_tape_loop_prunes_with_no_callback(digits):
    import tensorflow as tf

    (x, y), _ = digits
    model = prune_low_magnitude(
        keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)]),
        ConstantSparsity(0.7, begin_step=2, frequency=100),
    )
    optimizer = keras.optimizers.SGD(0.1)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for start in range(0, 4 * 32, 32):
        with tf.GradientTape() as tape:
            value = loss(y[start : start + 32], model(x[start : start + 32], training=True))
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    (wrapper,) = collect_prunable_layers(model)
    assert int(values(wrapper.pruning_step)) == 3
    assert mask_sparsity(wrapper) == pytest.approx([0.7], abs=0.01)


def test_the_update_callback_and_the_step_agree_on_the_sparsity(digits):
    # The same schedule, driven from the host by the callback or inside the
    # step without it, reaches the same sparsity.
    schedule = PolynomialDecay(0.0, 0.7, begin_step=0, end_step=30, frequency=10)
    results = []
    for callbacks in ([UpdatePruningStep()], []):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
        )
        pruned = fit(prune_low_magnitude(model, schedule), digits, callbacks=callbacks)
        results.append(mask_sparsity(collect_prunable_layers(pruned)[0]))
    assert results[0] == pytest.approx([0.7], abs=0.01)
    assert results[1] == pytest.approx([0.7], abs=0.01)
