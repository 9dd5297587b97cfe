"""TimingProfiler: hook arithmetic with a fake clock, output files, and real fits."""

import copy
import csv
import json
import os
import pickle
import threading
import time

import keras
import numpy as np
import pytest

from keras_fastrain import peak as peak_module
from keras_fastrain.callbacks import TimingProfiler, timing_report
from keras_fastrain.callbacks import timing_profiler as profiler_module
from tests.helpers import FakeClock, digits_model

# Callbacks must work on every backend: these run under torch too.
pytestmark = pytest.mark.smoke


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(profiler_module.time, "perf_counter", fake)
    return fake


@pytest.fixture
def probes(monkeypatch):
    """Counts the matmul probe's runs (each returns 1e12) with an empty peak cache."""
    calls = []

    def fake_probe(size, repeats, dtype):
        calls.append((size, repeats, dtype))
        return 1e12

    peak_module.clear_peak_cache()
    monkeypatch.setattr(peak_module, "_probe", fake_probe)
    yield calls
    peak_module.clear_peak_cache()  # no fake figure is left for later tests


def attach(profiler, steps):
    model = digits_model()
    model(keras.ops.zeros((1, 8, 8)))
    profiler.set_model(model)
    profiler.set_params({"epochs": 1, "steps": steps, "verbose": 0})
    return model


def run_steps(profiler, clock, groups, wait=0.0):
    """Drives the batch hooks: `groups` is a list of (first, last, seconds)."""
    for first, last, seconds in groups:
        clock.now += wait
        profiler.on_train_batch_begin(first)
        clock.now += seconds
        profiler.on_train_batch_end(last, {"loss": 1.0})


def test_step_mode_separates_first_step_and_validation(clock):
    profiler = TimingProfiler(batch_size=10, peak_flops=None, verbose=0)
    attach(profiler, steps=4)
    profiler.on_train_begin()
    profiler.on_epoch_begin(0)
    run_steps(profiler, clock, [(0, 0, 2.0), (1, 1, 0.1), (2, 2, 0.3), (3, 3, 0.2)], wait=0.05)
    profiler.on_test_begin()
    clock.now += 1.0
    profiler.on_test_end()
    logs = {"loss": 1.0}
    profiler.on_epoch_end(0, logs)
    profiler.on_train_end()

    (row,) = profiler.epochs
    assert row["epoch_time"] == pytest.approx(3.8)
    assert row["validation_time"] == pytest.approx(1.0)
    assert row["train_time"] == pytest.approx(2.8)
    assert row["steps"] == 4
    assert row["steps_per_sec"] == pytest.approx(4 / 2.8)
    assert row["samples_per_sec"] == pytest.approx(40 / 2.8)
    assert row["step_max"] == pytest.approx(2.0)
    assert logs["epoch_time"] == pytest.approx(3.8)
    assert logs["samples_per_sec"] == pytest.approx(40 / 2.8)

    summary = profiler.summary()
    assert summary["first_step_seconds"] == pytest.approx(2.0)
    steady = summary["steady_state"]
    # The first step (tracing) is left out; the rest is [0.1, 0.3, 0.2].
    assert steady["step_mean"] == pytest.approx(0.2)
    assert steady["step_median"] == pytest.approx(0.2)
    assert steady["step_p90"] == pytest.approx(0.28)
    if keras.backend.backend() != "torch":
        assert row["data_wait"] is None
        assert summary["data_wait"] == {
            "available": False,
            "reason": profiler_module.DATA_WAIT_UNAVAILABLE[keras.backend.backend()],
        }
    else:
        assert row["data_wait"] == pytest.approx(4 * 0.05)
        assert summary["data_wait"]["fraction"] == pytest.approx(0.2 / 2.8)


def test_steps_per_execution_groups_are_split_into_steps(clock):
    profiler = TimingProfiler(peak_flops=None, verbose=0)
    attach(profiler, steps=9)
    profiler.on_train_begin()
    profiler.on_epoch_begin(0)
    run_steps(profiler, clock, [(0, 2, 3.0), (3, 5, 0.6), (6, 8, 0.9)])
    profiler.on_epoch_end(0, {})
    profiler.on_train_end()
    (row,) = profiler.epochs
    assert row["steps"] == 9
    assert row["step_max"] == pytest.approx(1.0)
    steady = profiler.summary()["steady_state"]
    assert (steady["step_mean"], steady["step_max"]) == pytest.approx((0.25, 0.3))


def test_both_modes_are_one_class_and_only_epoch_mode_is_async_safe():
    epoch_mode = TimingProfiler(mode="epoch")
    step_mode = TimingProfiler()
    assert type(epoch_mode) is TimingProfiler and type(step_mode) is TimingProfiler
    assert epoch_mode.async_safe is True and step_mode.async_safe is False


def test_epoch_mode_batch_hooks_record_nothing(clock):
    profiler = TimingProfiler(mode="epoch", batch_size=10, peak_flops=None, verbose=0)
    attach(profiler, steps=4)
    profiler.on_train_begin()
    profiler.on_epoch_begin(0)
    run_steps(profiler, clock, [(0, 0, 2.0), (1, 1, 0.5), (2, 2, 0.5), (3, 3, 1.0)])
    profiler.on_epoch_end(0, {})
    profiler.on_train_end()
    (row,) = profiler.epochs
    # Steps come from Keras's params; the time from the epoch's two clock reads.
    assert (row["steps"], row["train_time"]) == pytest.approx((4, 4.0))
    assert row["step_mean"] is None and row["data_wait"] is None
    summary = profiler.summary()
    assert summary["first_step_seconds"] is None
    assert summary["data_wait"] == {"available": False, "reason": profiler_module.EPOCH_MODE_REASON}


class BatchEndThreads(keras.callbacks.Callback):
    """Records the thread that runs each `on_train_batch_end`."""

    async_safe = True  # it must not itself stop Keras's async dispatch

    def __init__(self):
        super().__init__()
        self.threads = set()

    def on_train_batch_end(self, batch, logs=None):
        self.threads.add(threading.get_ident())


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="Keras calls callbacks synchronously on TensorFlow (not thread-safe there)",
)
@pytest.mark.parametrize("mode", TimingProfiler.SUPPORTED_MODES)
def test_only_step_mode_stops_keras_async_dispatch(digits, mode):
    (x, y), _ = digits
    recorder = BatchEndThreads()
    profiler = TimingProfiler(mode=mode, peak_flops=None, verbose=0)
    digits_model().fit(x, y, epochs=1, callbacks=[profiler, recorder], verbose=0)
    main = threading.get_ident()
    if mode == "epoch":  # batch ends ran on Keras's worker threads
        assert recorder.threads and main not in recorder.threads
    else:
        assert recorder.threads == {main}


@pytest.mark.parametrize("mode", TimingProfiler.SUPPORTED_MODES)
def test_deep_copies_and_pickles_keep_the_mode(mode):
    original = TimingProfiler(mode=mode, batch_size=8, verbose=0)
    original.set_batch_size(16)
    for twin in (copy.deepcopy(original), pickle.loads(pickle.dumps(original))):
        assert type(twin) is TimingProfiler and twin.mode == mode
        assert twin.async_safe == original.async_safe and twin.batch_size == 8


# --- Batch size told by the caller ---------------------------------------------


def run_one_epoch(profiler, clock, steps=4, seconds=1.0):
    profiler.on_train_begin()
    profiler.on_epoch_begin(0)
    clock.now += seconds
    profiler.on_epoch_end(0, {})
    profiler.on_train_end()
    return profiler.summary()


def test_batch_size_told_before_fit_holds_for_that_run_only(clock):
    profiler = TimingProfiler(mode="epoch", peak_flops=1e9, verbose=0)
    attach(profiler, steps=4)
    profiler.set_batch_size(50)  # as FastModel does, before Keras's on_train_begin
    summary = run_one_epoch(profiler, clock)
    assert summary["batch_size"] == 50
    assert summary["epochs"][0]["samples_per_sec"] == pytest.approx(200.0)
    assert summary["steady_state"]["samples_per_sec"] == pytest.approx(200.0)
    cost = summary["cost"]
    assert cost["achieved_flops_per_sec"] == pytest.approx(200.0 * cost["train_flops_per_sample"])
    # The next run was told nothing: its batch is unknown, not the last one's.
    summary = run_one_epoch(profiler, clock)
    assert summary["batch_size"] is None
    assert summary["steady_state"]["samples_per_sec"] is None
    assert summary["cost"]["achieved_flops_per_sec"] is None
    assert "n/a" in timing_report.format_summary(summary)


def test_batch_size_given_by_the_user_is_not_overridden(clock):
    profiler = TimingProfiler(mode="epoch", batch_size=10, peak_flops=None, verbose=0)
    attach(profiler, steps=4)
    profiler.set_batch_size(999)
    summary = run_one_epoch(profiler, clock)
    assert summary["batch_size"] == 10
    assert summary["steady_state"]["samples_per_sec"] == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, r"`batch_size`.*Received: batch_size=0"),
        (2.5, TypeError, r"`batch_size`.*Received: batch_size=2\.5"),
        (True, TypeError, r"`batch_size`.*Received: batch_size=True"),
    ],
)
def test_set_batch_size_names_an_invalid_value(value, error, message):
    with pytest.raises(error, match=message):
        TimingProfiler().set_batch_size(value)


def test_real_fit_with_batch_size_told_reports_samples_per_second(digits):
    (x, y), _ = digits
    profiler = TimingProfiler(mode="epoch", peak_flops=None, verbose=0)
    profiler.set_batch_size(32)
    history = digits_model().fit(x, y, batch_size=32, epochs=2, callbacks=[profiler], verbose=0)
    steady = profiler.summary()["steady_state"]
    assert steady["samples_per_sec"] == pytest.approx(32 * steady["steps_per_sec"])
    assert len(history.history["samples_per_sec"]) == 2


def test_summary_before_training_says_when_it_is_available():
    with pytest.raises(RuntimeError, match="after `fit` has ended"):
        TimingProfiler().summary()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"mode": "batch"}, ValueError, r"`mode`.*Received: mode='batch'.*\('step', 'epoch'\)"),
        ({"batch_size": 0}, ValueError, r"`batch_size`.*Received: batch_size=0"),
        ({"peak_flops": "max"}, TypeError, r"`peak_flops`.*Received: peak_flops='max'"),
        ({"peak_flops": -1.0}, ValueError, r"`peak_flops`.*Received: peak_flops=-1\.0"),
        ({"json_path": 5}, TypeError, r"`json_path`.*Received: json_path=5"),
        ({"verbose": 3}, ValueError, r"`verbose`.*Received: verbose=3"),
    ],
)
def test_invalid_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        TimingProfiler(**kwargs)


def test_positional_arguments_are_refused():
    with pytest.raises(TypeError):
        TimingProfiler("epoch")


# --- Real fits ---------------------------------------------------------------


@pytest.mark.parametrize("mode", TimingProfiler.SUPPORTED_MODES)
def test_real_fit_reports_and_saves(digits, tmp_path, capsys, mode):
    (x, y), _ = digits
    profiler = TimingProfiler(
        mode=mode,
        batch_size=64,
        peak_flops=1e11,
        json_path=str(tmp_path / "timing.json"),
        csv_path=str(tmp_path / "timing.csv"),
    )
    history = digits_model().fit(
        x, y, batch_size=64, epochs=3, validation_split=0.2, callbacks=[profiler], verbose=0
    )
    summary = profiler.summary()
    assert [row["epoch"] for row in summary["epochs"]] == [1, 2, 3]
    steps = int(np.ceil(len(x) * 0.8 / 64))
    assert all(row["steps"] == steps for row in summary["epochs"])
    assert all(row["validation_time"] > 0 for row in summary["epochs"])
    assert history.history["epoch_time"] == [row["epoch_time"] for row in summary["epochs"]]
    assert len(history.history["samples_per_sec"]) == 3
    cost = summary["cost"]
    assert cost["forward_flops_per_sample"] == 2 * 64 * 32 + 32 + 32 + 2 * 32 * 10 + 10 + 30
    assert cost["utilization"] == pytest.approx(cost["achieved_flops_per_sec"] / 1e11)
    assert summary["backend"] == keras.backend.backend()
    assert summary["devices"] and summary["precision_policy"] == "float32"
    if mode == "step":
        assert summary["first_step_seconds"] > 0
        assert summary["steady_state"]["step_median"] > 0
    else:
        assert summary["first_step_seconds"] is None
        assert summary["steady_state"]["step_median"] is None
    assert json.loads((tmp_path / "timing.json").read_text()) == json.loads(json.dumps(summary))
    with open(tmp_path / "timing.csv") as csv_file:
        rows = list(csv.DictReader(csv_file))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    printed = capsys.readouterr().out
    assert "TimingProfiler:" in printed and "MFLOP per sample to train" in printed


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="torch needs steps_per_execution=1")
def test_real_fit_with_steps_per_execution(digits):
    (x, y), _ = digits
    model = digits_model()
    model.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=4)
    profiler = TimingProfiler(batch_size=32, peak_flops=None, verbose=0)
    model.fit(x, y, batch_size=32, epochs=2, callbacks=[profiler], verbose=0)
    summary = profiler.summary()
    steps = int(np.ceil(len(x) / 32))
    assert [row["steps"] for row in summary["epochs"]] == [steps, steps]
    assert summary["steps_per_execution"] == 4
    assert summary["steady_state"]["step_median"] > 0


def test_peak_is_measured_by_a_real_probe(digits):
    (x, y), _ = digits
    profiler = TimingProfiler(mode="epoch", batch_size=32, verbose=0)
    model = digits_model()
    model.fit(x, y, epochs=1, callbacks=[profiler], verbose=0)
    cost = profiler.summary()["cost"]
    assert cost["peak_flops_per_sec"] > 1e8 and cost["peak_source"] == "measured matmul probe"
    assert cost["utilization"] == pytest.approx(
        cost["achieved_flops_per_sec"] / cost["peak_flops_per_sec"]
    )


def test_peak_is_probed_once_per_process_and_dtype(probes, clock):
    first, second = (TimingProfiler(mode="epoch", verbose=0) for _ in range(2))
    for profiler in (first, second, first):  # two profilers, three runs
        attach(profiler, steps=4)
        assert run_one_epoch(profiler, clock)["cost"]["peak_flops_per_sec"] == 1e12
    assert probes == [(1024, 5, "float32")]
    peak_module.measure_peak_flops(dtype="float16")
    assert probes[1:] == [(1024, 5, "float16")]


def test_clearing_the_peak_cache_probes_again(probes):
    peak_module.measure_peak_flops(size=64, repeats=1)
    peak_module.measure_peak_flops(size=64, repeats=1)
    peak_module.clear_peak_cache()
    peak_module.measure_peak_flops(size=64, repeats=1)
    assert len(probes) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"size": 8}, ValueError, r"`size`.*Received: size=8"),
        ({"repeats": 0}, ValueError, r"`repeats`.*Received: repeats=0"),
    ],
)
def test_peak_probe_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        peak_module.measure_peak_flops(**kwargs)


class SlowDigits(keras.utils.PyDataset):
    """Digits in batches of 32, each batch delayed by `delay` seconds."""

    def __init__(self, x, y, delay):
        super().__init__()
        self.x, self.y, self.delay = x, y, delay

    def __len__(self):
        return len(self.x) // 32

    def __getitem__(self, index):
        time.sleep(self.delay)
        batch = slice(index * 32, (index + 1) * 32)
        return self.x[batch], self.y[batch]


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="only torch's fit loop fetches data between batch hooks; see the next test",
)
def test_data_wait_is_measured_between_steps(digits):
    (x, y), _ = digits
    data = SlowDigits(x, y, delay=0.01)
    profiler = TimingProfiler(peak_flops=None, verbose=0)
    digits_model().fit(data, epochs=1, callbacks=[profiler], verbose=0)
    wait = profiler.summary()["data_wait"]
    assert wait["available"]
    # Every batch slept 10 ms before its step began.
    assert wait["seconds"] >= 0.01 * len(data)


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="TensorFlow and JAX")
def test_data_wait_inside_the_step_is_reported_unavailable(digits):
    (x, y), _ = digits
    profiler = TimingProfiler(peak_flops=None, verbose=0)
    digits_model().fit(SlowDigits(x, y, delay=0.0), epochs=1, callbacks=[profiler], verbose=0)
    assert profiler.summary()["data_wait"] == {
        "available": False,
        "reason": profiler_module.DATA_WAIT_UNAVAILABLE[keras.backend.backend()],
    }


def test_tensorboard_scalars_are_written(digits, tmp_path):
    pytest.importorskip("tensorflow")
    (x, y), _ = digits
    profiler = TimingProfiler(log_dir=str(tmp_path / "tb"), peak_flops=None, verbose=0)
    digits_model().fit(x, y, epochs=2, callbacks=[profiler], verbose=0)
    events = [name for name in os.listdir(tmp_path / "tb") if "tfevents" in name]
    assert len(events) == 1 and (tmp_path / "tb" / events[0]).stat().st_size > 0
