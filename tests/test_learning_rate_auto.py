"""`FastModel(learning_rate="auto")` and `WarmupDecay` on real data
(scikit-learn digits), on the session's backend: the rate is measured,
kept only when it pays, scheduled, counted in the fit's time and put back."""

import itertools
import math

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from keras_fastrain.batching import BatchSizeFinder, ResizableDataset
from keras_fastrain.callbacks import AdaptiveBatchSize, EarlyStopping, WarmupDecay
from keras_fastrain.callbacks.warmup_decay import warmup_decay
from keras_fastrain.learning_rate import LearningRateFinder
from keras_fastrain.learning_rate.compare import compare_rates

pytestmark = pytest.mark.smoke


def _layers():
    return [
        keras.Input((8, 8)),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10),
    ]


def _model(learning_rate=None, rate=1e-3, fast=True):
    keras.utils.set_random_seed(0)
    if fast:
        model = FastModel(keras.Sequential(_layers()), learning_rate=learning_rate, verbose=0)
    else:
        model = keras.Sequential(_layers())
    model.compile(
        keras.optimizers.Adam(rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _rate(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_auto_finds_a_rate_that_pays_and_schedules_it(digits):
    (x, y), (x_test, y_test) = digits
    # A rate far too small for Adam: the range test must find better.
    model = _model("auto", rate=1e-5)
    stopping = EarlyStopping(monitor="loss", patience=100)
    history = model.fit(x, y, batch_size=32, epochs=20, verbose=0, callbacks=[stopping])
    choice = model.choices["learning_rate"]
    search, comparison = model.learning_rate_search, model.learning_rate_comparison
    assert choice.value == search.suggestion > 1e-4
    assert comparison.best == search.suggestion
    assert comparison.losses[1] < comparison.losses[0]
    assert "cosine decay over 20 epochs (no warm-up" in choice.reason
    # The schedule: from the suggestion down to nearly nothing.
    rates = history.history["lr"]
    assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0]
    assert rates[0] <= search.suggestion * (1 + 1e-6)
    assert _rate(model) == pytest.approx(1e-5)  # the optimizer's own rate, back
    # The test's time is in the fit's time.
    assert stopping.elapsed() > search.seconds + comparison.seconds
    plain = _model(None, rate=1e-5)
    plain.fit(x, y, batch_size=32, epochs=20, verbose=0)
    assert (
        model.evaluate(x_test, y_test, verbose=0)[1] > plain.evaluate(x_test, y_test, verbose=0)[1]
    )


def test_the_range_test_runs_from_the_model_as_the_fit_got_it(digits, monkeypatch):
    # The batch search before it keeps its steps as training; the range test
    # and the comparison still start from the weights the fit was given.
    (x, y), _ = digits
    model = _model("auto", rate=1e-5)
    given = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    seen = {}
    original = LearningRateFinder.find

    def find(self, model, *args, **kwargs):
        seen["weights"] = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
        seen["iterations"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        return original(self, model, *args, **kwargs)

    monkeypatch.setattr(LearningRateFinder, "find", find)
    finder = BatchSizeFinder(16, max_batch_size=32, steps_per_trial=2, max_seconds=None)
    model.fit(x, y, batch_size=finder, epochs=20, verbose=0)
    search = model.batch_size_search
    assert search.trained_steps > 0 and seen["iterations"] == 0
    for before, at_test in zip(given, seen["weights"], strict=True):
        np.testing.assert_array_equal(before, at_test)
    steps = 20 * math.ceil(len(x) / search.batch_size)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == (
        search.trained_steps + steps
    )  # the fit went on from the search's training


def test_auto_keeps_keras_rate_when_the_run_is_too_short_to_pay(digits):
    (x, y), _ = digits
    auto, plain = _model("auto"), _model(None)
    auto.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    plain.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    choice = auto.choices["learning_rate"]
    assert choice.value == "kept" and "under the 20 a curve needs" in choice.reason
    for a, b in zip(auto.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # trained exactly as Keras


class _OverEagerFinder(LearningRateFinder):
    """Suggests a rate far too large, whatever the curve says."""

    def find(self, model, x, y=None, sample_weight=None):
        search = super().find(model, x, y, sample_weight)
        search.suggestion, search.reason = 50.0, "made too large"
        return search


def test_auto_keeps_the_optimizer_rate_when_the_suggestion_trains_no_faster(digits):
    (x, y), _ = digits
    model = _model(_OverEagerFinder(num_steps=30))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    choice = model.choices["learning_rate"]
    assert choice.value == pytest.approx(1e-3)
    assert choice.reason.startswith("kept: the range test suggested 50")
    assert model.learning_rate_comparison.best == pytest.approx(1e-3)


def test_auto_says_why_it_cannot_apply(digits):
    (x, y), _ = digits
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.9)
    model = FastModel(keras.Sequential(_layers()), learning_rate="auto", verbose=0)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert "LearningRateSchedule" in model.choices["learning_rate"].reason

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return x[index * 32 : (index + 1) * 32], y[index * 32 : (index + 1) * 32]

    model = _model("auto")
    model.fit(Batches(), epochs=1, verbose=0)
    assert "trains on arrays" in model.choices["learning_rate"].reason


def test_auto_is_checked_and_saved(tmp_path, digits):
    with pytest.raises(ValueError, match=r"`learning_rate`.*learning_rate=0.1"):
        FastModel(keras.Sequential(_layers()), learning_rate=0.1)
    model = _model("auto")
    (x, y), _ = digits
    model.fit(x[:64], y[:64], epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config()["learning_rate"] == "auto"


def test_compare_rates_trains_the_same_steps_and_restores_the_model(digits):
    (x, y), _ = digits
    model = _model(fast=False)
    before = [np.array(w) for w in model.get_weights()]
    comparison = compare_rates(model, x, y, rates=[1e-6, 1e-2], steps=10)
    assert comparison.best == 1e-2 and comparison.losses[1] < comparison.losses[0]
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _rate(model) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="at least two rates"):
        compare_rates(model, x, y, rates=[1e-3])
    with pytest.raises(ValueError, match=r"`rates`.*-1"):
        compare_rates(model, x, y, rates=[1e-3, -1.0])
    with pytest.raises(ValueError, match="`batch_size`"):
        compare_rates(model, x, y, rates=[1e-3, 1e-2], batch_size=0)


def test_warmup_decay_shape():
    assert warmup_decay(0.0) == pytest.approx(0.1)
    assert warmup_decay(0.05) == pytest.approx(1.0)
    assert warmup_decay(0.525) == pytest.approx(0.505)
    assert warmup_decay(1.0) == pytest.approx(0.01)
    values = [warmup_decay(p / 100) for p in range(5, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_warmup_decay_on_a_plain_fit_follows_a_growing_batch(digits):
    (x, y), _ = digits
    model = _model(fast=False, rate=2e-3)
    data = ResizableDataset(x, y, batch_size=32, seed=0)
    growth = AdaptiveBatchSize(data, schedule={2: 4}, learning_rate_rule="sqrt")
    schedule = WarmupDecay(warmup=0.0, final_fraction=1.0, adaptive_batch_size=growth)
    history = model.fit(data, epochs=3, verbose=0, callbacks=[growth, schedule])
    # A flat schedule (no warm-up, no decay): only the batch moves the rate.
    assert history.history["lr"][:2] == pytest.approx([2e-3, 2e-3])
    assert history.history["lr"][2] == pytest.approx(2e-3 * math.sqrt(4))


@pytest.mark.parametrize(
    ("option", "value"),
    [("peak_learning_rate", 0.0), ("warmup", 1.0), ("epochs", 0), ("adaptive_batch_size", 3)],
)
def test_warmup_decay_checks_its_arguments(option, value):
    with pytest.raises((ValueError, TypeError), match=f"`{option}`"):
        WarmupDecay(**{option: value})
