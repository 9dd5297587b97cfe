"""XLA measured on the user's model: `search_compile_options` and the
compile-options part's measurement at the first long-enough fit."""

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel, setup_time
from keras_fastrain.compile_search import search_compile_options
from keras_fastrain.parts import compile_options
from keras_fastrain.snapshot import ModelSnapshot
from tests.helpers import digits_model

TENSORFLOW = keras.backend.backend() == "tensorflow"
CANDIDATES = [(False, 4), (True, 4)] if TENSORFLOW else [(True, 1), (True, 4)]


def _weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.variables + model.optimizer.variables]


def test_search_measures_each_setting_and_leaves_the_weights_as_they_were(digits):
    (x, y), _ = digits
    model = digits_model()
    before = ModelSnapshot(model, x).values
    search = search_compile_options(model, model.fit, x, y, None, 32, CANDIDATES)
    assert [(t.jit_compile, t.steps_per_execution) for t in search.trials] == CANDIDATES
    assert all(t.samples_per_second > 0 and t.seconds > 0 for t in search.trials)
    assert search.stopped == "completed" and search.baseline is search.trials[0]
    for a, b in zip(before, _weights(model), strict=True):
        np.testing.assert_array_equal(a, b)
    chosen = search.chosen
    assert (model.jit_compile, model.steps_per_execution) == (
        chosen.jit_compile,
        chosen.steps_per_execution,
    )
    assert model.train_function is not None  # the measured step is kept, not traced again
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert f"batch 32: {search.trials[0].samples_per_second:,.0f} samples/s" in search.summary()


def test_search_keeping_its_training_trains_each_setting_on_fresh_rows(digits):
    (x, y), _ = digits
    model = digits_model()
    before = _weights(model)
    search = search_compile_options(
        model, model.fit, x, y, None, 32, CANDIDATES, keep_training=True
    )
    assert len(search.trials) == 2
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == search.trained_steps
    assert search.trained_steps > 0 and f"its {search.trained_steps:,} steps" in search.summary()
    assert any(not np.array_equal(a, b) for a, b in zip(before, _weights(model), strict=True))


def test_the_first_setting_is_kept_unless_another_beats_it_by_the_margin(digits):
    (x, y), _ = digits
    model = digits_model()
    # The same setting twice: the second is never twice as fast as the first.
    same = [CANDIDATES[0], CANDIDATES[0]]
    search = search_compile_options(model, model.fit, x, y, None, 32, same, margin=0.5)
    assert search.chosen is search.baseline
    assert "the first measured (Keras's setting)" in search.summary()


def test_a_budget_too_small_for_a_second_setting_measures_only_the_first(digits):
    (x, y), _ = digits
    model = digits_model()
    search = search_compile_options(model, model.fit, x, y, None, 32, CANDIDATES, run_steps=1)
    assert len(search.trials) == 1 and search.stopped == "time budget"
    assert search.chosen is search.baseline and "did not fit in the budget" in search.summary()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"candidates": []}, "`candidates`"),
        ({"margin": 1.5}, r"`margin`.*1.5"),
        ({"budget_share": 0.0}, "`budget_share`"),
        ({"run_steps": 0}, r"`run_steps`.*0"),
        ({"keep_training": "yes"}, r"`keep_training`.*'yes'"),
    ],
)
def test_bad_arguments_name_the_argument(digits, kwargs, match):
    (x, y), _ = digits
    model = digits_model()
    arguments = {"candidates": CANDIDATES, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        search_compile_options(model, model.fit, x, y, None, 32, **arguments)


def _fast_digits(**options):
    keras.utils.set_random_seed(0)
    model = FastModel(digits_model(), verbose=0, **options)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.skipif(not TENSORFLOW, reason="XLA is measured where it is a choice: TensorFlow")
def test_the_measurement_never_trains_on_the_rows_held_out_for_validation(digits, monkeypatch):
    (x, y), _ = digits
    monkeypatch.setattr(compile_options, "BUDGET_SHARE", 1.0)
    measured = []

    def recording(model, fit, x, *args, run_steps, **kwargs):
        measured.append(x)
        return search_compile_options(model, fit, x, *args, **kwargs)

    monkeypatch.setattr(compile_options, "search_compile_options", recording)
    model = _fast_digits()
    model.fit(x, y, epochs=6, validation_split=0.25, verbose=0)
    assert len(measured[0]) == int(len(x) * 0.75)
    np.testing.assert_array_equal(measured[0], x[: int(len(x) * 0.75)])
    assert model.compile_options_search.trained_steps > 0


@pytest.mark.skipif(not TENSORFLOW, reason="XLA is measured where it is a choice: TensorFlow")
def test_a_long_enough_fit_measures_xla_once_and_counts_the_time(digits, monkeypatch):
    (x, y), _ = digits
    # Digits make a short run: no step-count gate and no time budget here.
    monkeypatch.setattr(compile_options, "BUDGET_SHARE", 1.0)
    unbounded = lambda *args, run_steps, **kwargs: search_compile_options(*args, **kwargs)  # noqa: E731
    monkeypatch.setattr(compile_options, "search_compile_options", unbounded)
    model = _fast_digits()
    assert model.jit_compile is False  # Keras's own setting on a CPU, until measured
    model.fit(x, y, epochs=6, verbose=0)
    search = model.compile_options_search
    assert [t.jit_compile for t in search.trials] == [False, True]
    assert model.jit_compile is search.chosen.jit_compile
    assert model.choices["jit_compile"].value is search.chosen.jit_compile
    assert model.choices["jit_compile"].reason == search.summary()
    assert [i.what for i in setup_time.intervals(model)] == ["XLA measurement"]
    model.fit(x, y, epochs=6, verbose=0)
    assert model.compile_options_search is search  # measured once per compile
    model.compile("adam", "sparse_categorical_crossentropy")
    assert model.compile_options_search is None


@pytest.mark.skipif(not TENSORFLOW, reason="XLA is measured where it is a choice: TensorFlow")
def test_a_short_fit_keeps_keras_setting_and_says_why(digits):
    (x, y), _ = digits
    model = _fast_digits()
    model.fit(x, y, epochs=2, verbose=0)
    assert model.compile_options_search is None and model.jit_compile is False
    reason = model.choices["jit_compile"].reason
    assert "too few to measure within 5%" in reason
    model.fit(x, y, epochs=2, verbose=0)
    assert model.choices["jit_compile"].reason == reason  # said once, not appended again


@pytest.mark.skipif(not TENSORFLOW, reason="XLA is measured where it is a choice: TensorFlow")
def test_data_that_is_not_arrays_is_not_measured(digits, monkeypatch):
    import tensorflow as tf

    (x, y), _ = digits
    monkeypatch.setattr(compile_options, "BUDGET_SHARE", 1.0)
    model = _fast_digits()
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=5, verbose=0)
    assert model.compile_options_search is None
    assert "not arrays" in model.choices["jit_compile"].reason


def test_nothing_is_measured_when_xla_is_given_or_not_a_choice(digits, monkeypatch):
    (x, y), _ = digits
    monkeypatch.setattr(compile_options, "BUDGET_SHARE", 1.0)
    given = _fast_digits(jit_compile=keras.backend.backend() != "torch")
    given.fit(x, y, epochs=5, verbose=0)
    assert given.compile_options_search is None
    assert given.choices["jit_compile"].reason == "given"
    if not TENSORFLOW:  # JAX needs XLA, torch has none: nothing to measure
        auto = _fast_digits()
        auto.fit(x, y, epochs=5, verbose=0)
        assert auto.compile_options_search is None
