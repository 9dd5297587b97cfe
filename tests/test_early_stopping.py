"""EarlyStopping: Keras parity, the new criteria, state, and real short fits."""

import copy
import datetime
import json

import keras
import numpy as np
import pytest

from keras_fastrain.callbacks import BackupAndRestore, EarlyStopping, StopReason
from keras_fastrain.callbacks import early_stopping as early_stopping_module
from tests.helpers import FakeClock, InterruptAtEpoch, digits_model

# Callbacks must work on every backend: these run under torch too.
pytestmark = pytest.mark.smoke


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock(now=100.0)
    monkeypatch.setattr(early_stopping_module.time, "perf_counter", fake)
    return fake


def tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    return model


def drive(callback, values, monitor="val_loss", loss=None, model=None):
    """Feeds one monitored value per epoch; returns the epochs run."""
    model = model or tiny_model()
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    epochs = 0
    for epoch, value in enumerate(values):
        epochs += 1
        logs = {monitor: value, "loss": value if loss is None else loss[epoch]}
        callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback.on_train_end()
    return epochs


KERAS_CASES = [
    ({"patience": 0}, [1.0, 0.9, 0.95, 0.8]),
    ({"patience": 2}, [1.0, 0.9, 0.95, 0.94, 0.93, 0.5]),
    ({"patience": 1, "min_delta": 0.1}, [1.0, 0.95, 0.91, 0.8]),
    ({"patience": 2, "baseline": 0.5}, [1.0, 0.9, 0.8, 0.7]),
    ({"patience": 1, "start_from_epoch": 3}, [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]),
    ({"patience": 1, "mode": "max", "monitor": "val_auc"}, [0.5, 0.6, 0.6, 0.55]),
]


@pytest.mark.parametrize(("kwargs", "values"), KERAS_CASES)
def test_stops_at_the_same_epoch_as_keras(kwargs, values):
    monitor = kwargs.get("monitor", "val_loss")
    ours = EarlyStopping(**kwargs)
    theirs = keras.callbacks.EarlyStopping(**kwargs)
    assert drive(ours, values, monitor) == drive(theirs, values, monitor)
    assert ours.stopped_epoch == theirs.stopped_epoch
    if ours.stopped_epoch:
        assert ours.stopped_reason is StopReason.NO_IMPROVEMENT


def test_target_stops_as_soon_as_it_is_reached(clock):
    stop = EarlyStopping(monitor="val_accuracy", target=0.85, patience=10)
    model = tiny_model()
    stop.set_model(model)
    stop.on_train_begin()
    for epoch, accuracy in enumerate([0.5, 0.7, 0.86, 0.9]):
        clock.now += 10
        stop.on_epoch_end(epoch, {"val_accuracy": accuracy, "loss": 1.0})
        if model.stop_training:
            break
    assert (stop.stopped_reason, stop.stopped_epoch) == (StopReason.TARGET_REACHED, 2)
    assert stop.time_to_target == pytest.approx(30.0)
    assert "reached the target 0.85 at epoch 3, after 30.0 s" in stop.describe_stop()


def test_target_in_min_mode():
    stop = EarlyStopping(monitor="val_loss", target=0.3, patience=10)
    assert drive(stop, [1.0, 0.5, 0.3, 0.1]) == 3
    assert stop.stopped_reason is StopReason.TARGET_REACHED


def test_divergence_threshold():
    stop = EarlyStopping(divergence_threshold=3.0, patience=10)
    assert drive(stop, [1.0, 0.8, 5.0, 0.5]) == 3
    assert stop.stopped_reason is StopReason.DIVERGED


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_not_finite_loss_stops(bad):
    stop = EarlyStopping(monitor="val_accuracy", patience=10)
    epochs = drive(stop, [0.5, 0.6, 0.7], "val_accuracy", loss=[1.0, bad, 1.0])
    assert (epochs, stop.stopped_reason) == (2, StopReason.NOT_FINITE)


def test_not_finite_check_can_be_switched_off():
    stop = EarlyStopping(patience=10, check_finite=False)
    assert drive(stop, [1.0, float("nan"), 0.5]) == 3
    assert stop.stopped_reason is None and stop.describe_stop() is None


@pytest.mark.parametrize("budget", [60, datetime.timedelta(minutes=1)])
def test_time_budget_is_checked_after_every_batch(clock, budget):
    stop = EarlyStopping(max_duration=budget)
    model = tiny_model()
    stop.set_model(model)
    model.stop_training = False
    stop.on_train_begin()
    clock.now += 59.9
    stop.on_train_batch_end(0)
    assert not model.stop_training
    clock.now += 0.2
    stop.on_train_batch_end(1)
    assert model.stop_training and stop.stopped_reason is StopReason.TIME_BUDGET
    stop.on_epoch_end(0, {"val_loss": 1.0, "loss": 1.0})
    assert stop.stopped_epoch == 0
    assert "time budget of 60 s" in stop.describe_stop()


def test_missing_monitor_warns_like_keras():
    stop = EarlyStopping(monitor="val_loss")
    stop.set_model(tiny_model())
    stop.on_train_begin()
    with pytest.warns(UserWarning, match="monitors `val_loss`.*Available: loss"):
        stop.on_epoch_end(0, {"loss": 1.0})


def test_is_a_keras_early_stopping_with_its_attributes():
    stop = EarlyStopping(monitor="val_accuracy", min_delta=0.01, verbose=2, restore_best_weights=1)
    assert isinstance(stop, keras.callbacks.EarlyStopping)
    assert stop.monitor_op is keras.ops.greater and stop.min_delta == 0.01
    assert stop.restore_best_weights is True and stop.verbose == 2
    loss_stop = EarlyStopping(min_delta=0.01)
    # Keras keeps min_delta negative in min mode; its own test must agree.
    assert loss_stop.monitor_op is keras.ops.less and loss_stop.min_delta == -0.01
    assert loss_stop._is_improvement(0.5, 0.52) and not loss_stop._is_improvement(0.5, 0.505)


@pytest.mark.parametrize(
    "name",
    [
        "mean_io_u",
        "val_binary_io_u",
        "one_hot_mean_io_u",
        "cosine_similarity",
        "pearson_correlation",
        "concordance_correlation",
        "sensitivity_at_specificity",
        "val_specificity_at_sensitivity",
    ],
)
def test_keras_metric_names_go_up(name):
    assert EarlyStopping(monitor=name).direction == "max"


def test_a_name_it_does_not_know_takes_the_compiled_metrics_direction():
    model = tiny_model()
    model.compile("sgd", "mse", metrics=[keras.metrics.MeanSquaredError(name="speed")])
    model.evaluate(np.zeros((4, 4)), np.zeros((4, 2)), verbose=0)  # builds the metrics
    stop = EarlyStopping(monitor="val_speed", patience=0)
    assert stop.direction is None
    assert drive(stop, [1.0, 2.0, 3.0], monitor="val_speed", model=model) == 2
    assert stop.direction == "min"
    unknown = EarlyStopping(monitor="val_pace")
    with pytest.raises(ValueError, match=r"monitor=.val_pace..*mode='min' or mode='max'"):
        drive(unknown, [1.0], monitor="val_pace")


def test_a_one_element_array_is_its_value_and_a_longer_one_is_refused():
    stop = EarlyStopping(monitor="val_f1_score", patience=0)
    values = [np.array([0.5], "float32"), np.array([0.6], "float32"), np.array([0.55])]
    assert drive(stop, values, monitor="val_f1_score") == 3
    assert stop.best == pytest.approx(0.6) and isinstance(stop.best, float)
    with pytest.raises(ValueError, match=r"`val_f1_score`, which logs 3 values.*average="):
        drive(EarlyStopping(monitor="val_f1_score"), [np.ones(3)], monitor="val_f1_score")


def test_a_typo_in_monitor_names_the_closest_key():
    stop = EarlyStopping(monitor="val_acuracy", mode="max")
    stop.set_model(tiny_model())
    stop.on_train_begin()
    logs = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5}
    with pytest.raises(ValueError, match=r"`val_acuracy`.*Did you mean `val_accuracy`"):
        stop.on_epoch_end(0, logs)


def test_each_fit_starts_afresh_and_copies_are_independent():
    stop = EarlyStopping(patience=0)
    assert drive(stop, [1.0, 2.0, 3.0]) == 2
    twin = copy.deepcopy(stop)
    assert drive(stop, [1.0, 0.9, 0.8, 0.7]) == 4
    assert stop.stopped_reason is None and stop.wait == 0
    assert twin.stopped_reason is StopReason.NO_IMPROVEMENT


def test_state_is_json_and_carries_over(clock):
    stop = EarlyStopping(patience=3)
    stop.set_model(tiny_model())
    stop.on_train_begin()
    for epoch, value in enumerate([1.0, 0.5, 0.6, 0.7]):
        clock.now += 5
        stop.on_epoch_end(epoch, {"val_loss": value, "loss": value})
    state = json.loads(json.dumps(stop.get_state()))
    assert state == {
        "wait": 2,
        "best": 0.5,
        "best_epoch": 1,
        "elapsed": 20.0,
        "time_to_target": None,
    }
    resumed = EarlyStopping(patience=3)
    resumed.set_state(state)
    resumed.set_model(tiny_model())
    resumed.on_train_begin()
    clock.now += 5
    assert resumed.elapsed() == pytest.approx(25.0)
    resumed.on_epoch_end(4, {"val_loss": 0.8, "loss": 0.8})
    assert resumed.model.stop_training and resumed.wait == 3


def test_verbose_says_why_once(capsys):
    stop = EarlyStopping(patience=0, verbose=1)
    drive(stop, [1.0, 2.0])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["EarlyStopping: val_loss did not improve for 1 epochs; stopped at epoch 2."]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"monitor": ""}, TypeError, r"`monitor`.*Received: monitor=''"),
        ({"patience": -1}, ValueError, r"`patience`.*Received: patience=-1"),
        ({"verbose": -1}, ValueError, r"`verbose`.*Received: verbose=-1"),
        ({"mode": "up"}, ValueError, r"`mode`.*Received: mode='up'.*'auto', 'min', 'max'"),
        ({"baseline": "low"}, TypeError, r"`baseline`.*Received: baseline='low'"),
        ({"target": float("inf")}, ValueError, r"`target`.*Expected a finite number"),
        ({"restore_best_weights": 2}, TypeError, r"`restore_best_weights`.*0 / 1"),
        ({"restore_best_weights": "yes"}, TypeError, r"`restore_best_weights`"),
        ({"start_from_epoch": 1.5}, TypeError, r"`start_from_epoch`"),
        ({"check_finite": None}, TypeError, r"`check_finite`"),
        ({"max_duration": 0}, ValueError, r"`max_duration`.*Received: max_duration=0\.0"),
        ({"max_duration": "1h"}, TypeError, r"`max_duration`.*Received: max_duration='1h'"),
    ],
)
def test_invalid_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        EarlyStopping(**kwargs)


# --- Real fits on scikit-learn's digits --------------------------------------


class BatchCounter(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_real_fit_stops_at_the_target(digits):
    (x, y), (x_test, y_test) = digits
    stop = EarlyStopping(monitor="val_accuracy", target=0.8, patience=100)
    history = digits_model(learning_rate=0.01).fit(
        x, y, validation_data=(x_test, y_test), epochs=100, callbacks=[stop], verbose=0
    )
    epochs_run = len(history.history["loss"])
    assert stop.stopped_reason is StopReason.TARGET_REACHED
    assert epochs_run < 100 and stop.stopped_epoch == epochs_run - 1
    assert history.history["val_accuracy"][-1] >= 0.8
    assert all(acc < 0.8 for acc in history.history["val_accuracy"][:-1])
    assert stop.time_to_target > 0


def test_real_fit_stops_within_an_epoch_on_its_time_budget(digits):
    (x, y), _ = digits
    stop = EarlyStopping(monitor="loss", max_duration=0.3)
    counter = BatchCounter()
    digits_model(learning_rate=0.01).fit(
        x, y, batch_size=1, epochs=3, callbacks=[stop, counter], verbose=0
    )
    assert stop.stopped_reason is StopReason.TIME_BUDGET
    assert counter.batches < 3 * len(x)
    assert stop.elapsed() >= 0.3


def test_real_fit_monitors_f1_score(digits):
    (x, y), (x_test, y_test) = digits
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.compile(
        "adam",
        "categorical_crossentropy",
        metrics=[keras.metrics.F1Score(average="micro")],
    )
    stop = EarlyStopping(monitor="val_f1_score", patience=1, target=0.5)
    history = model.fit(
        x,
        keras.utils.to_categorical(y, 10),
        validation_data=(x_test, keras.utils.to_categorical(y_test, 10)),
        epochs=20,
        callbacks=[stop],
        verbose=0,
    )
    assert stop.stopped_reason is not None
    assert len(history.history["loss"]) == stop.stopped_epoch + 1


def test_real_fit_with_a_typo_fails_after_the_first_epoch(digits):
    (x, y), _ = digits
    stop = EarlyStopping(monitor="val_acuracy", mode="max")
    model = digits_model()
    with pytest.raises(ValueError, match="Did you mean `val_accuracy`"):
        model.fit(x, y, validation_split=0.2, epochs=5, callbacks=[stop], verbose=0)


def test_real_fit_stops_on_a_nan_loss(digits):
    (x, _), _ = digits
    targets = np.zeros((len(x), 10), "float32")
    targets[5, 3] = np.nan  # one broken label poisons the mean loss
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("sgd", "mse")
    stop = EarlyStopping(monitor="loss", patience=5)
    history = model.fit(x, targets, epochs=5, callbacks=[stop], verbose=0)
    assert stop.stopped_reason is StopReason.NOT_FINITE
    assert len(history.history["loss"]) == 1


class WeightsPerEpoch(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def test_real_fit_restores_the_best_epochs_weights(digits):
    (x, y), (x_test, y_test) = digits
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    recorder = WeightsPerEpoch()
    model = digits_model(learning_rate=0.2)  # too high: val_loss wanders
    model.fit(
        x, y, validation_data=(x_test, y_test), epochs=30, callbacks=[recorder, stop], verbose=0
    )
    assert stop.stopped_reason is StopReason.NO_IMPROVEMENT
    assert stop.best_epoch < stop.stopped_epoch
    for restored, best in zip(model.get_weights(), recorder.weights[stop.best_epoch], strict=True):
        np.testing.assert_array_equal(restored, best)


class StateAtFirstEpoch(keras.callbacks.Callback):
    def __init__(self, watched):
        super().__init__()
        self.watched = watched
        self.state = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.state is None:
            self.state = self.watched.get_state()


def test_interrupted_run_resumes_with_its_best_wait_and_budget(digits, tmp_path):
    (x, y), (x_test, y_test) = digits
    fit_args = {"validation_data": (x_test, y_test), "epochs": 6, "verbose": 0}
    first = EarlyStopping(monitor="val_accuracy", patience=50, max_duration=3600)
    backup = BackupAndRestore(str(tmp_path), callbacks=[first])
    model = digits_model(learning_rate=0.01)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, callbacks=[backup, first, InterruptAtEpoch(3)], **fit_args)
    (saved,) = json.loads((tmp_path / "callback_states.json").read_text()).values()
    assert saved["wait"] == first.wait and saved["best"] == first.best

    # A new process would build new callbacks: the state comes from the backup.
    second = EarlyStopping(monitor="val_accuracy", patience=50, max_duration=3600)
    probe = StateAtFirstEpoch(second)
    history = model.fit(
        x,
        y,
        callbacks=[second, BackupAndRestore(str(tmp_path), callbacks=[second]), probe],
        **fit_args,
    )
    assert len(history.history["loss"]) == 3  # epochs 4 to 6 only
    resumed = probe.state
    assert (resumed["best"], resumed["wait"], resumed["best_epoch"]) == (
        saved["best"],
        saved["wait"],
        saved["best_epoch"],
    )
    assert resumed["elapsed"] >= saved["elapsed"] > 0
    assert not (tmp_path / "callback_states.json").exists()  # deleted with the backup


def test_backup_rejects_callbacks_without_state():
    with pytest.raises(TypeError, match=r"`callbacks`.*callbacks\[0\]="):
        BackupAndRestore("/tmp/unused", callbacks=[keras.callbacks.History()])


def test_a_resumed_run_does_not_inherit_the_last_runs_stop():
    stop = EarlyStopping(patience=0)
    assert drive(stop, [1.0, 2.0]) == 2 and stop.stopped_reason is StopReason.NO_IMPROVEMENT
    stop.set_state(
        {"wait": 0, "best": 1.0, "best_epoch": 0, "elapsed": 1.0, "time_to_target": None}
    )
    assert drive(stop, [0.9, 0.8, 0.7]) == 3
    assert (stop.stopped_reason, stop.stopped_epoch, stop.best) == (None, 0, 0.7)
