"""Pruning Keras 3 models: wrap, train, strip, save, on every backend."""

import keras
import numpy as np
import pytest

from keras_fastrain import _keras_internals
from keras_fastrain.pruning import (
    ConstantSparsity,
    PolynomialDecay,
    PruneLowMagnitude,
    PruningSummaries,
    UpdatePruningStep,
    prune_low_magnitude,
    strip_pruning,
)
from keras_fastrain.pruning.callbacks import pruning_wrappers

pytestmark = pytest.mark.smoke


def digits_mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def train(model, digits, epochs=6, callbacks=None):
    (x, y), _ = digits
    model.compile(
        keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=callbacks)
    return model


def values(variable):
    return keras.ops.convert_to_numpy(variable.value)


def test_a_pruned_model_trains_to_the_target_sparsity_with_exact_zeros(digits):
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=60, frequency=10)
    model = prune_low_magnitude(digits_mlp(), schedule)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Flatten",
        "PruneLowMagnitude",
        "PruneLowMagnitude",
    ]
    train(model, digits, callbacks=[UpdatePruningStep()])  # 138 steps: 78 after the last update
    for wrapper in pruning_wrappers(model):
        kernel, mask = values(wrapper.pruned_weights[0]), values(wrapper.masks[0])
        assert (mask == 0).mean() == pytest.approx(0.8, abs=1e-3)
        assert np.all(kernel[mask == 0] == 0.0)  # exactly zero after optimizer updates
        assert np.all(kernel[mask == 1] != 0.0)
    _, (x_test, y_test) = digits
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.9


def test_a_sequential_without_an_input_prunes_strips_and_saves(digits, tmp_path):
    # The model builds in its first step, as most tutorials write it.
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.layers.Flatten(), keras.layers.Dense(32, "relu"), keras.layers.Dense(10, "softmax")]
    )
    pruned = prune_low_magnitude(model, ConstantSparsity(0.5, begin_step=0, frequency=1))
    train(pruned, digits, epochs=1, callbacks=[UpdatePruningStep()])
    small = strip_pruning(pruned)
    kernel = values(small.layers[1].kernel)
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.01)
    small.save(tmp_path / "small.keras")
    (x, _), _ = digits
    loaded = keras.models.load_model(tmp_path / "small.keras")
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0), small.predict(x[:8], verbose=0))


def test_strip_pruning_gives_a_plain_model_with_the_same_predictions_that_saves(digits, tmp_path):
    _, (x_test, _) = digits
    model = train(
        prune_low_magnitude(digits_mlp(), ConstantSparsity(0.5, 0, frequency=20)),
        digits,
        epochs=2,
        callbacks=[UpdatePruningStep()],
    )
    stripped = strip_pruning(model)
    assert not any(isinstance(layer, PruneLowMagnitude) for layer in stripped.layers)
    assert len(stripped.weights) == 4  # two kernels, two biases: no masks
    expected = model.predict(x_test, verbose=0)
    np.testing.assert_allclose(stripped.predict(x_test, verbose=0), expected, atol=1e-6)
    stripped.save(tmp_path / "stripped.keras")
    loaded = keras.models.load_model(tmp_path / "stripped.keras")
    np.testing.assert_allclose(loaded.predict(x_test, verbose=0), expected, atol=1e-6)
    assert (keras.ops.convert_to_numpy(loaded.layers[1].kernel) == 0).mean() >= 0.5


def test_a_pruned_model_saves_and_loads_with_its_masks_and_schedule(digits, tmp_path):
    _, (x_test, _) = digits
    model = train(
        prune_low_magnitude(digits_mlp(), ConstantSparsity(0.7, 0, frequency=10)),
        digits,
        epochs=1,
        callbacks=[UpdatePruningStep()],
    )
    model.save(tmp_path / "pruned.keras")
    loaded = keras.models.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(
        loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-6
    )
    wrapper = pruning_wrappers(loaded)[0]
    assert isinstance(wrapper.pruning_schedule, ConstantSparsity)
    assert wrapper.pruning_schedule.target_sparsity == 0.7


def test_layers_chooses_what_is_pruned_in_a_functional_model(digits):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8))
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(
        keras.layers.Flatten()(inputs)
    )
    outputs = keras.layers.Dense(10, activation="softmax", name="classify")(hidden)
    model = prune_low_magnitude(
        keras.Model(inputs, outputs), ConstantSparsity(0.5, 0), layers=["hidden"]
    )
    assert [w.layer.name for w in pruning_wrappers(model)] == ["hidden"]
    train(model, digits, epochs=1, callbacks=[UpdatePruningStep()])


def test_m_by_n_sparsity_prunes_two_of_every_four_weights(digits):
    model = prune_low_magnitude(digits_mlp(), sparsity_m_by_n=(2, 4))
    train(model, digits, epochs=1, callbacks=[UpdatePruningStep()])
    kernel = values(pruning_wrappers(model)[0].pruned_weights[0])  # (64 inputs, 64 outputs)
    groups = (kernel.T != 0).reshape(-1, 4)
    assert (groups.sum(axis=1) <= 2).all()


def test_a_schedule_from_elsewhere_is_called_as_is(digits):
    calls = []

    def schedule(step):  # tfmot's protocol: step -> (should_prune, sparsity)
        calls.append(int(step))
        return np.asarray(int(step) % 5 == 0), np.asarray(0.6, "float32")

    model = train(
        prune_low_magnitude(digits_mlp(), schedule),
        digits,
        epochs=1,
        callbacks=[UpdatePruningStep()],
    )
    assert sorted(set(calls))[:3] == [0, 1, 2]  # every step, for each pruned layer
    mask = values(pruning_wrappers(model)[0].masks[0])
    assert (mask == 0).mean() == pytest.approx(0.6, abs=1e-3)


def test_pruning_summaries_report_each_weights_sparsity(digits, tmp_path):
    summaries = PruningSummaries(log_dir=str(tmp_path / "logs"))
    model = prune_low_magnitude(digits_mlp(), ConstantSparsity(0.4, 0, frequency=5))
    (x, y), _ = digits
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(
        x, y, epochs=2, verbose=0, callbacks=[UpdatePruningStep(), summaries]
    ).history
    keys = [key for key in history if key.startswith("sparsity/")]
    assert len(keys) == 2
    assert history[keys[0]][-1] == pytest.approx(0.4, abs=1e-3)
    assert list((tmp_path / "logs").iterdir())


def test_plain_fit_prunes_inside_the_step_with_no_callback(digits):
    # The classic recipe's snippet: prune_low_magnitude(model), compile, fit.
    model = prune_low_magnitude(digits_mlp())  # ConstantSparsity(0.5, 0, frequency=100)
    train(model, digits, epochs=5)  # 23 steps an epoch: pruned at steps 0 and 100
    for wrapper in pruning_wrappers(model):
        assert int(values(wrapper.pruning_step)) == 5 * 23 - 1
        for _, mask, threshold in wrapper.pruning_vars:
            assert np.mean(values(mask) == 0) == pytest.approx(0.5, abs=0.01)
            assert values(threshold) > 0  # the smallest magnitude kept at the last update
    stripped = strip_pruning(model)
    assert np.mean(values(stripped.layers[1].kernel) == 0) == pytest.approx(0.5, abs=0.01)


def test_a_custom_training_loop_prunes_with_no_callback(digits):
    (x, y), _ = digits
    model = prune_low_magnitude(digits_mlp(), PolynomialDecay(0.0, 0.75, 0, 20, frequency=5))
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    for start in range(0, 25 * 32, 32):  # 25 steps of train_on_batch
        model.train_on_batch(x[start : start + 32], y[start : start + 32])
    for wrapper in pruning_wrappers(model):
        assert int(values(wrapper.pruning_step)) == 24
        for mask in wrapper.masks:
            assert np.mean(values(mask) == 0) == pytest.approx(0.75, abs=0.01)


def test_tfmots_custom_loop_idiom_drives_the_masks_from_the_callback(digits):
    (x, y), _ = digits
    model = prune_low_magnitude(digits_mlp(), ConstantSparsity(0.6, begin_step=3, frequency=100))
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    step_callback = UpdatePruningStep()
    step_callback.set_model(model)
    log_callback = PruningSummaries()
    log_callback.set_model(model)
    step_callback.on_train_begin()
    sparsity_after, logged = [], []
    for _ in range(2):  # epochs
        log_callback.on_epoch_begin(epoch=-1)
        for start in range(0, 4 * 32, 32):  # 4 steps an epoch
            step_callback.on_train_batch_begin(batch=-1)
            model.train_on_batch(x[start : start + 32], y[start : start + 32])
            mask = pruning_wrappers(model)[0].masks[0]
            sparsity_after.append(round(float(np.mean(values(mask) == 0)), 2))
        step_callback.on_epoch_end(batch=-1)
        logs = {}
        log_callback.on_epoch_end(batch=-1, logs=logs)
        logged.append(logs)
    step_callback.on_train_end()
    assert all(len(logs) == 2 for logs in logged)  # each pruned kernel's sparsity
    assert all(round(value, 2) == 0.6 for logs in logged for value in logs.values())
    # Pruned before step 3 (the fourth), not an epoch late.
    assert sparsity_after == [0.0, 0.0, 0.0, 0.6, 0.6, 0.6, 0.6, 0.6]
    kernel = values(pruning_wrappers(model)[0].layer.kernel)
    assert np.mean(kernel == 0) == pytest.approx(0.6, abs=0.01)


def test_a_schedule_that_cannot_run_in_the_step_needs_the_callback(digits):
    def schedule(step):  # a plain function: Python values only
        return int(step) % 10 == 0, 0.5

    model = prune_low_magnitude(digits_mlp(), pruning_schedule=schedule)
    with pytest.raises(ValueError, match=r"add keras_fastrain.pruning.UpdatePruningStep\(\)"):
        train(model, digits, epochs=1)


class MaskedWeightsAreZero(keras.callbacks.Callback):
    """Asserts the masked weights are exactly zero at every step's start
    (after UpdatePruningStep's hook), after every step if `after_steps`, and
    when fit returns."""

    def __init__(self, after_steps):
        super().__init__()
        self.after_steps = after_steps
        self.checks = 0

    def _check(self):
        _keras_internals.sync_jax_state(self.model)
        for wrapper in pruning_wrappers(self.model):
            for weight, mask in wrapper.weights_and_masks():
                assert np.all(values(weight)[values(mask) == 0] == 0.0)
        self.checks += 1

    def on_train_batch_begin(self, batch, logs=None):
        self._check()

    def on_train_batch_end(self, batch, logs=None):
        if self.after_steps:
            self._check()

    def on_train_end(self, logs=None):
        self._check()


@pytest.mark.parametrize(
    ("optimizer", "entrywise"),
    [
        (lambda: keras.optimizers.SGD(0.05, momentum=0.9), True),
        (lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.01), True),
        (lambda: keras.optimizers.Lion(1e-3), True),
        (lambda: keras.optimizers.Adam(1e-2, use_ema=True), True),
        (lambda: keras.optimizers.Muon(1e-2), False),
    ],
    ids=["sgd-momentum", "adamw", "lion", "adam-ema", "muon"],
)
def test_masked_weights_stay_exactly_zero_through_every_optimizer_step(
    digits, optimizer, entrywise
):
    # Pruning mid-training: the slots already hold momentum for the entries
    # a mask update removes.
    schedule = PolynomialDecay(0.0, 0.8, begin_step=5, end_step=25, frequency=5)
    model = prune_low_magnitude(digits_mlp(), schedule)
    model.compile(optimizer(), "sparse_categorical_crossentropy")
    check = MaskedWeightsAreZero(after_steps=entrywise)
    (x, y), _ = digits
    history = model.fit(
        x[:960], y[:960], batch_size=64, epochs=2, verbose=0, callbacks=[UpdatePruningStep(), check]
    )
    assert check.checks == (2 * 30 if entrywise else 30) + 1
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert pruning_wrappers(model)[0].sparsity()[model.layers[1].pruned_weights[0].path] == (
        pytest.approx(0.8, abs=1e-3)
    )


def test_the_update_callback_leaves_asynchronous_dispatch_on():
    # Keras turns async dispatch off for a callback with a batch-end hook.
    assert UpdatePruningStep.on_train_batch_end is keras.callbacks.Callback.on_train_batch_end


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: prune_low_magnitude(keras.layers.Lambda(lambda t: t)),
            ValueError,
            r"Cannot prune <Lambda.*pruning applies to .*Dense",
        ),
        (
            lambda: prune_low_magnitude(keras.Sequential([keras.Input((4,)), keras.layers.ReLU()])),
            ValueError,
            r"Nothing to prune in 'sequential",
        ),
        (
            lambda: prune_low_magnitude(digits_mlp(), layers=["no_such_layer"]),
            ValueError,
            r"Nothing to prune",
        ),
        (
            lambda: prune_low_magnitude(digits_mlp(), layers=3),
            TypeError,
            r"Received: layers=3",
        ),
        (
            lambda: prune_low_magnitude(keras.layers.Dense(2), block_size=(2,)),
            ValueError,
            r"Received: block_size=\(2,\)",
        ),
        (
            lambda: prune_low_magnitude(keras.layers.Dense(2), pruning_schedule=0.5),
            TypeError,
            r"Received: pruning_schedule=0\.5",
        ),
        (
            lambda: prune_low_magnitude(
                keras.Sequential([keras.Input((8, 3)), keras.layers.Conv1D(4, 3)]),
                sparsity_m_by_n=(2, 4),
            ),
            ValueError,
            r"needs a Dense \(2-D\) or Conv2D \(4-D\) kernel.*\(3, 3, 4\)",
        ),
    ],
)
def test_bad_requests_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_the_update_callback_refuses_a_model_with_nothing_to_prune(digits):
    with pytest.raises(ValueError, match="has no layer to prune"):
        train(digits_mlp(), digits, epochs=1, callbacks=[UpdatePruningStep()])


@pytest.mark.parametrize("style", ["functional", "sequential", "no_input", "wrapped"])
def test_fast_model_prunes_during_fit_with_no_callback_and_strips(style, digits):
    from keras_fastrain import FastModel, FastSequential

    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=60, frequency=10)
    layers = digits_mlp().layers
    if style == "functional":
        inputs = keras.Input((8, 8))
        outputs = layers[2](layers[1](layers[0](inputs)))
        model = FastModel(inputs, outputs, pruning=schedule)
    elif style == "sequential":
        model = FastSequential([keras.Input((8, 8)), *layers], pruning=schedule)
    elif style == "no_input":  # builds in its first step
        model = FastSequential(layers, pruning=schedule)
    else:
        model = FastModel(digits_mlp(), pruning={"pruning_schedule": schedule})
    train(model, digits)
    stripped = model.strip_pruning()
    kernels = [layer.kernel for layer in stripped.layers if hasattr(layer, "kernel")]
    assert len(kernels) == 2 and not pruning_wrappers(stripped)
    for kernel in kernels:
        assert (keras.ops.convert_to_numpy(kernel) == 0).mean() == pytest.approx(0.8, abs=2e-3)
    _, (x_test, y_test) = digits
    np.testing.assert_allclose(
        stripped.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-6
    )
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.9


def test_a_subclassed_fast_model_prunes_the_layers_it_wraps(digits):
    from keras_fastrain import FastModel

    class Net(FastModel):
        def __init__(self):
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.hidden = prune_low_magnitude(keras.layers.Dense(32, activation="relu"))
            self.classify = keras.layers.Dense(10, activation="softmax")

        def call(self, images):
            return self.classify(self.hidden(self.flatten(images)))

    model = train(Net(), digits, epochs=1)  # no UpdatePruningStep given: fit adds it
    assert (keras.ops.convert_to_numpy(model.hidden.masks[0]) == 0).mean() == pytest.approx(
        0.5, abs=1e-3
    )
    with pytest.raises(ValueError, match=r"subclassed FastModel.*prune_low_magnitude"):

        class Plain(FastModel):
            def call(self, images):
                return images

        Plain(pruning=ConstantSparsity(0.5, 0))


def test_the_compression_report_measures_sparsity_size_and_int8(digits):
    from keras_fastrain.pruning import compression_report

    dense = train(digits_mlp(), digits, epochs=3)
    pruned = train(
        prune_low_magnitude(digits_mlp(), PolynomialDecay(0.0, 0.8, 0, 40, frequency=10)),
        digits,
        epochs=3,
        callbacks=[UpdatePruningStep()],
    )
    _, (x_test, y_test) = digits

    def accuracy(model):
        return {"accuracy": (model.predict(x_test, verbose=0).argmax(-1) == y_test).mean()}

    report = compression_report(pruned, dense=dense, evaluate=accuracy)
    assert list(report.sparsity.values()) == pytest.approx([0.8, 0.8], abs=2e-3)
    assert report.size_ratio < 0.6  # zeros compress
    assert report.int8_bytes < report.pruned_bytes
    assert set(report.metrics) == {
        "pruned accuracy",
        "dense accuracy",
        "pruned + int8 accuracy",
    }
    assert report.metrics["pruned + int8 accuracy"] > 0.85
    assert "gzipped weights, pruned" in report.table()
    assert report.to_dict()["size_ratio"] == report.size_ratio


def test_an_embedding_model_keeps_its_integer_input_when_pruned():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5,), dtype="int32"),
            keras.layers.Embedding(20, 4),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    pruned = prune_low_magnitude(model, ConstantSparsity(0.5, 0, frequency=1))
    assert pruned.inputs[0].dtype == "int32"
    tokens = np.random.default_rng(0).integers(0, 20, (32, 5)).astype("int32")
    pruned.compile("sgd", "mse")
    pruned.fit(tokens, np.zeros((32, 2)), epochs=1, verbose=0, callbacks=[UpdatePruningStep()])
    embeddings = pruning_wrappers(pruned)[0].masks[0]
    assert (values(embeddings) == 0).mean() == pytest.approx(0.5)
    np.testing.assert_allclose(
        strip_pruning(pruned).predict(tokens, verbose=0), pruned.predict(tokens, verbose=0)
    )


def test_a_fast_sequential_without_layers_refuses_pruning_it_could_not_apply():
    from keras_fastrain import FastSequential
    from keras_fastrain.pruning import ConstantSparsity

    with pytest.raises(ValueError, match=r"layers=None with pruning"):
        FastSequential(pruning=ConstantSparsity(0.5, begin_step=0))
