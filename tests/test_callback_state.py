"""Every keras-fastrain callback that keeps state across epochs saves it as
JSON (`get_state`/`set_state`), and a run interrupted and resumed through
`BackupAndRestore` goes on from it."""

import json

import keras
import pytest

from keras_fastrain.batching import ResizableDataset
from keras_fastrain.callbacks import (
    AdaptiveBatchSize,
    BackupAndRestore,
    EarlyStopping,
    TimingProfiler,
)
from tests.helpers import InterruptAtEpoch

pytestmark = pytest.mark.smoke


def _stateful():
    callbacks = [
        EarlyStopping(monitor="loss", patience=3),
        AdaptiveBatchSize(schedule={1: 2}),
        TimingProfiler(mode="epoch", peak_flops=None, verbose=0),
    ]
    try:
        from keras_fastrain.tuner import TimeToTargetLogger
    except ImportError:  # the tuner extra is not installed
        return callbacks
    return [*callbacks, TimeToTargetLogger("accuracy", target=2.0)]


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    return model


@pytest.mark.parametrize("callback", _stateful(), ids=lambda c: type(c).__name__)
def test_state_is_json_after_a_fit_and_loads_into_a_fresh_callback(callback, digits):
    (x, y), _ = digits
    data = ResizableDataset(x[:256], y[:256], batch_size=32)
    if isinstance(callback, AdaptiveBatchSize):
        callback.data = data
    _model().fit(data, epochs=2, verbose=0, callbacks=[callback])
    state = json.loads(json.dumps(callback.get_state()))
    callback.set_state(state)  # accepted back before the next run
    assert json.loads(json.dumps(callback.get_state())) == state


def test_the_profile_of_a_resumed_run_has_every_epoch(digits, tmp_path):
    (x, y), _ = digits
    first = TimingProfiler(mode="epoch", peak_flops=None, verbose=0)
    model = _model()
    backup = BackupAndRestore(str(tmp_path), callbacks=[first])
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=4, verbose=0, callbacks=[backup, first, InterruptAtEpoch(2)])

    second = TimingProfiler(mode="epoch", peak_flops=None, verbose=0)
    model.fit(
        x, y, epochs=4, verbose=0, callbacks=[second, BackupAndRestore(str(tmp_path), [second])]
    )
    assert [row["epoch"] for row in second.epochs] == [1, 2, 3, 4]


def test_the_time_to_target_of_a_resumed_run_counts_the_time_before(digits, tmp_path):
    pytest.importorskip("keras_tuner", reason="the tuner extra is not installed")
    from keras_fastrain.tuner import TimeToTargetLogger

    (x, y), _ = digits
    first = TimeToTargetLogger("accuracy", target=2.0)  # never reached
    model = _model()
    backup = BackupAndRestore(str(tmp_path), callbacks=[first])
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[backup, first, InterruptAtEpoch(2)])
    (saved,) = json.loads((tmp_path / "callback_states.json").read_text()).values()
    assert saved["elapsed"] > 0 and saved["best"] is not None

    second = TimeToTargetLogger("accuracy", target=2.0)
    probe = []
    watcher = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: probe.append(second.get_state())
    )
    model.fit(
        x,
        y,
        epochs=3,
        verbose=0,
        callbacks=[second, BackupAndRestore(str(tmp_path), [second]), watcher],
    )
    assert probe[0]["elapsed"] >= saved["elapsed"]
    assert probe[0]["best"] == saved["best"]
