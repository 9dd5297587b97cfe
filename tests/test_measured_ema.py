"""`MeasuredEMA` and `FastModel(ema="auto")`: the weights' moving average,
kept only where the fit's validation scores it better than the last weights."""

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from keras_fastrain.callbacks import EarlyStopping, MeasuredEMA
from tests.helpers import digits_model


def _model(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _values(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]


def _averages(model):
    return _values(model.optimizer._model_variables_moving_average)


def _close(first, second):
    return all(np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(first, second, strict=True))


class _Scored(keras.callbacks.Callback):
    """Keeps the weights each validation of the fit scores (before any swap back)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_test_begin(self, logs=None):
        self.seen.append(_values(self.model.trainable_variables))


def _fit(model, data, measured, epochs=3, batch_size=8):
    (x, y), test = data
    scored = _Scored()
    history = model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=test,
        callbacks=[measured, scored],
        verbose=0,
    )
    return history.history, scored.seen


@pytest.mark.smoke
def test_an_average_that_scores_better_is_kept_and_the_fit_ends_holding_it(digits):
    # SGD at a high rate is noisy; its short average (30 steps) scores better.
    model = _model(keras.optimizers.SGD(0.3, use_ema=True, ema_momentum=0.9))
    measured = MeasuredEMA()
    history, seen = _fit(model, digits, measured)
    assert measured.kept is True and "kept" in measured.decision
    assert measured.scores["average"] <= measured.scores["last"]
    # The first validation (epoch 1, after 180 > 30 steps) measured; it and
    # every later one scored the average, which the fit ends with.
    assert history["val_loss"][0] == pytest.approx(measured.scores["average"], rel=1e-6)
    final = _values(model.trainable_variables)
    assert _close(seen[-1], final) and _close(final, _averages(model))
    assert model.optimizer.use_ema  # the user's optimizer as given


@pytest.mark.smoke
def test_an_average_that_scores_worse_is_dropped_and_the_fit_ends_with_the_last_weights(
    digits,
):
    # Early in training the loss falls fast, and an average over about the
    # last 100 steps trails the last weights.
    model = _model(keras.optimizers.Adam(1e-3, use_ema=True))
    measured = MeasuredEMA()
    history, seen = _fit(model, digits, measured)
    assert measured.kept is False and "dropped" in measured.decision
    assert measured.scores["average"] > measured.scores["last"]
    # Epoch 1 (180 steps) was before the 300 the average needs: the last
    # weights were scored. Epoch 2 measured: its logs carry the last weights'
    # score. Epoch 3 scored the last weights, and the fit ends with them.
    assert history["val_loss"][1] == pytest.approx(measured.scores["last"], rel=1e-5)
    final = _values(model.trainable_variables)
    assert _close(seen[-1], final) and not _close(final, _averages(model))
    (_, _), (x_test, y_test) = digits
    evaluated = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert evaluated["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-5)
    assert model.optimizer.use_ema


def test_a_fit_without_validation_is_not_measured_and_ends_with_the_last_weights(digits):
    (x, y), _ = digits
    model = _model(keras.optimizers.SGD(0.3, use_ema=True, ema_momentum=0.9))
    measured = MeasuredEMA()
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[measured], verbose=0)
    assert measured.kept is None and "not measured" in measured.decision
    assert not _close(_values(model.trainable_variables), _averages(model))
    assert model.optimizer.use_ema


def test_fastmodel_auto_measures_on_the_monitor_of_the_fits_early_stopping(digits):
    (x, y), test = digits
    model = FastModel(digits_model(), ema="auto", verbose=0)
    model.compile(
        keras.optimizers.SGD(0.3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.99
    assert model.choices["ema"].value == "auto" and "MeasuredEMA" in model.choices["ema"].reason
    callbacks = [EarlyStopping(monitor="val_accuracy", patience=5)]
    model.fit(x, y, batch_size=4, epochs=2, validation_data=test, callbacks=callbacks, verbose=0)
    assert len(callbacks) == 1  # the user's list is left as given
    decided = model.choices["ema"]
    assert decided.value == "auto" and decided.changes_results
    assert "val_accuracy" in decided.reason and (
        "kept" in decided.reason or "dropped" in decided.reason
    )


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("arguments", "error", "names"),
    [
        ({"monitor": "loss"}, ValueError, "`monitor`"),
        ({"monitor": 3}, ValueError, "`monitor`"),
        ({"mode": "up"}, ValueError, "`mode`"),
        ({"monitor": "val_custom"}, ValueError, "mode='min'"),
        ({"verbose": "loud"}, TypeError, "`verbose`"),
    ],
)
def test_bad_arguments_name_the_argument(arguments, error, names):
    with pytest.raises(error, match=names):
        MeasuredEMA(**arguments)


def test_an_optimizer_without_an_average_is_refused_before_training(digits):
    (x, y), test = digits
    model = _model(keras.optimizers.Adam())
    before = _values(model.trainable_variables) if model.built else None
    with pytest.raises(ValueError, match="use_ema=True"):
        model.fit(x, y, epochs=1, validation_data=test, callbacks=[MeasuredEMA()], verbose=0)
    assert before is None or _close(before, _values(model.trainable_variables))


@pytest.mark.smoke
def test_fastmodel_auto_is_accepted_and_a_bad_value_names_the_argument():
    with pytest.raises(ValueError, match="`ema`"):
        FastModel(digits_model(), ema="always")


def test_a_plain_model_that_ended_a_fit_with_its_average_fits_again(digits):
    # Keras's own use_ema fit ends with the average in the weights (on JAX
    # in the same buffer); the fits with MeasuredEMA after it still run.
    (x, y), test = digits
    model = _model(keras.optimizers.Adam(1e-3, use_ema=True))
    model.fit(x, y, epochs=1, verbose=0)
    for _ in range(2):
        measured = MeasuredEMA(verbose=0)
        model.fit(
            x, y, batch_size=8, epochs=2, validation_data=test, callbacks=[measured], verbose=0
        )
        assert measured.kept is not None


class _EpochEndState(keras.callbacks.Callback):
    """Keeps the optimizer's use_ema at each epoch's end, as a checkpoint saves it."""

    def __init__(self):
        super().__init__()
        self.use_ema = []

    def on_epoch_end(self, epoch, logs=None):
        self.use_ema.append(self.model.optimizer.use_ema)


def test_a_dropped_average_leaves_the_optimizer_as_given_and_keeps_updating(digits):
    (x, y), test = digits
    model = _model(keras.optimizers.Adam(1e-3, use_ema=True))
    measured, state = MeasuredEMA(verbose=0), _EpochEndState()
    model.fit(
        x, y, batch_size=8, epochs=3, validation_data=test, callbacks=[measured, state], verbose=0
    )
    assert measured.kept is False
    # A checkpoint at any epoch's end saves the optimizer with its average.
    assert state.use_ema == [True, True, True]
    before = _averages(model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # plain Keras's fit end again
    assert not _close(before, _averages(model))  # the average kept moving
    assert _close(_values(model.trainable_variables), _averages(model))


class _AtTrainBegin(keras.callbacks.Callback):
    """Keeps the weights and their averages as Keras's fit begins."""

    def on_train_begin(self, logs=None):
        self.weights = _values(self.model.trainable_variables)
        self.averages = _averages(self.model)


def test_fastmodel_measurements_do_not_end_with_the_average(digits):
    # The batch search's short fits keep their training; Keras would end
    # each with the average written into the weights.
    from keras_fastrain.batching import BatchSizeFinder

    (x, y), _ = digits
    model = FastModel(digits_model(), ema=0.9, verbose=0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    begin = _AtTrainBegin()
    finder = BatchSizeFinder(min_batch_size=16, max_batch_size=32, steps_per_trial=8)
    model.fit(x, y, batch_size=finder, epochs=1, callbacks=[begin], verbose=0)
    assert model.batch_size_search.trained_steps > 0
    assert not _close(begin.weights, begin.averages)


def test_fastmodel_auto_with_the_users_swap_callback_says_it_did_not_measure(digits):
    (x, y), test = digits
    model = FastModel(digits_model(), ema="auto", verbose=0)
    model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy")
    swap = keras.callbacks.SwapEMAWeights()
    model.fit(x, y, epochs=1, validation_data=test, callbacks=[swap], verbose=0)
    assert "not measured" in model.choices["ema"].reason


def test_fastmodel_averages_in_a_loss_scale_optimizer_of_the_users(digits):
    (x, y), test = digits
    model = FastModel(digits_model(), ema=True, verbose=0)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    model.compile(optimizer, "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, validation_data=test, verbose=0)
    assert optimizer.inner_optimizer.use_ema
    assert _close(_values(model.trainable_variables), _averages_of(optimizer.inner_optimizer))


def _averages_of(optimizer):
    return _values(optimizer._model_variables_moving_average)
