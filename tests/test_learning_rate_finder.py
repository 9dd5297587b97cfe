"""The learning-rate range test on real data (scikit-learn digits), on the
session's backend: its curve, its suggestion, its bounds, and the model it
leaves untouched."""

import math

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from keras_fastrain.learning_rate import LearningRateFinder, LearningRateSearch
from keras_fastrain.learning_rate import finder as finder_module
from keras_fastrain.learning_rate.finder import suggest

pytestmark = pytest.mark.smoke


def _model(rate=1e-3, fast=False):
    keras.utils.set_random_seed(0)
    layers = [
        keras.Input((8, 8)),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10),
    ]
    model = FastModel(keras.Sequential(layers), verbose=0) if fast else keras.Sequential(layers)
    model.compile(
        keras.optimizers.Adam(rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def _state(model):
    return [np.array(v) for v in model.get_weights()] + [
        keras.ops.convert_to_numpy(v).copy() for v in model.optimizer.variables
    ]


@pytest.mark.parametrize("fast", [False, True], ids=["keras.Model", "FastModel"])
def test_the_test_suggests_a_rate_that_trains_and_leaves_the_model_as_it_was(digits, fast):
    (x, y), _ = digits
    model = _model(fast=fast)
    model.fit(x[:64], y[:64], epochs=1, verbose=0)  # optimizer slots and iterations exist
    before = _state(model)
    search = LearningRateFinder(num_steps=60, batch_size=32).find(model, x, y)

    assert isinstance(search, LearningRateSearch)
    assert search.rates == sorted(search.rates) and len(search.losses) == len(search.rates)
    assert search.stopped in ("diverged", "completed")
    assert max(search.raw_losses) > 2 * min(search.raw_losses)  # the range reached too large
    assert search.suggestion is not None, search.reason
    assert 1e-5 < search.suggestion < search.min_loss_rate < 10
    for saved, now in zip(before, _state(model), strict=True):
        np.testing.assert_array_equal(saved, now)
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert math.isclose(rate, 1e-3, rel_tol=1e-6)
    assert "suggestion:" in search.table()

    # The suggestion teaches more in one epoch than a rate 100x smaller.
    losses = {}
    for rate in (search.suggestion, search.suggestion / 100):
        trained = _model(rate, fast=fast)
        history = trained.fit(x, y, batch_size=32, epochs=1, verbose=0)
        losses[rate] = history.history["loss"][-1]
    assert losses[search.suggestion] < losses[search.suggestion / 100]


def test_the_time_budget_ends_the_test_early(digits, monkeypatch):
    (x, y), _ = digits
    ticks = iter(range(10_000))
    monkeypatch.setattr(finder_module.time, "perf_counter", lambda: float(next(ticks)))
    search = LearningRateFinder(num_steps=50, max_seconds=5.5).find(_model(), x, y)
    assert search.stopped == "time budget"
    assert len(search.rates) < 10


def test_no_suggestion_when_the_loss_never_falls():
    rates = np.geomspace(1e-4, 1, 20).tolist()
    rising = np.linspace(1.0, 3.0, 20).tolist()
    rate, reason = suggest(rates, rising)
    assert rate is None and "rose from the start" in reason
    flat = [1.0] * 20
    assert suggest(rates, flat)[0] is None
    assert suggest(rates[:3], rising[:3]) == (None, "only 3 steps measured, too few for a curve")


def test_the_suggestion_is_the_steepest_fall_and_at_most_a_tenth_of_the_lowest():
    rates = np.geomspace(1e-6, 1, 61).tolist()
    log_rates = np.log10(rates)
    # A valley that falls fastest at 1e-4 and is lowest near 1e-1.
    valley = 2 - np.tanh(1.5 * (log_rates + 4)) + 2 * np.maximum(0, log_rates + 1) ** 2
    rate, reason = suggest(rates, valley.tolist())
    assert 10**-4.3 < rate < 10**-3.7, reason
    # Falling fastest close to the lowest point: a tenth of the lowest wins.
    late = 2 - np.tanh(3 * (log_rates + 1.2)) + 8 * np.maximum(0, log_rates + 0.8) ** 2
    rate, reason = suggest(rates, late.tolist())
    lowest = rates[int(np.argmin(late))]
    assert math.isclose(rate, lowest / 10, rel_tol=0.3), reason


def test_a_schedule_or_an_uncompiled_model_or_a_dataset_is_refused(digits):
    (x, y), _ = digits
    scheduled = _model()
    scheduled.compile(
        keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)), "mse"
    )
    with pytest.raises(ValueError, match="LearningRateSchedule"):
        LearningRateFinder().find(scheduled, x, y)
    with pytest.raises(ValueError, match="Compile the model"):
        LearningRateFinder().find(keras.Sequential([keras.layers.Dense(1)]), x, y)
    with pytest.raises(TypeError, match="Invalid value for argument `x`"):
        LearningRateFinder().find(_model(), [[1, 2]], y)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"min_learning_rate": 0},
            ValueError,
            r"`min_learning_rate`.*Received: min_learning_rate=0",
        ),
        ({"max_learning_rate": 1e-8}, ValueError, r"`max_learning_rate`.*Received"),
        ({"max_learning_rate": math.inf}, ValueError, r"`max_learning_rate`.*finite"),
        ({"num_steps": 4}, ValueError, r"`num_steps`.*Received: num_steps=4"),
        ({"max_seconds": 0}, ValueError, r"`max_seconds`.*Received: max_seconds=0"),
        ({"max_seconds": math.nan}, ValueError, r"`max_seconds`"),
        ({"batch_size": 0}, ValueError, r"`batch_size`.*Received: batch_size=0"),
        ({"smoothing": 1.0}, ValueError, r"`smoothing`.*Received: smoothing=1\.0"),
        ({"divergence": 1.0}, ValueError, r"`divergence`.*Received: divergence=1\.0"),
        ({"seed": -1}, ValueError, r"`seed`.*Received: seed=-1"),
        ({"num_steps": "many"}, TypeError, r"`num_steps`"),
    ],
)
def test_every_argument_is_checked_by_name(kwargs, error, message):
    with pytest.raises(error, match=message):
        LearningRateFinder(**kwargs)
