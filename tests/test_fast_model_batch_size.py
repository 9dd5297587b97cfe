"""FastModel's batch size: searched (`batch_size="auto"`) and grown
(`AdaptiveBatchSize` on plain arrays), on the session's backend."""

import json
import math
import random

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel, choices, setup_time
from keras_fastrain.batching import (
    BatchSizeFinder,
    GroupedBatches,
    ResizableDataset,
    TFDataBatches,
)
from keras_fastrain.callbacks import (
    AdaptiveBatchSize,
    BackupAndRestore,
    EarlyStopping,
    TimingProfiler,
)
from keras_fastrain.callbacks.timing_report import format_summary
from keras_fastrain.snapshot import ModelSnapshot
from tests.helpers import InterruptAtEpoch

pytestmark = pytest.mark.smoke
QUICK = {"max_trials": 4, "steps_per_trial": 2, "max_seconds": None}


def digits_model(seed=0, rate=1e-3):
    keras.utils.set_random_seed(seed)
    model = FastModel(
        keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(10),
            ]
        ),
        steps_per_execution=1,
    )
    model.compile(
        keras.optimizers.Adam(rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def learning_rate(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class _EpochRecord(keras.callbacks.Callback):
    """Each epoch's planned steps (as the progress bar sees them) and run steps."""

    def __init__(self):
        super().__init__()
        self.planned, self.ran = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.planned.append(self.params["steps"])
        self.ran.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.ran[-1] += 1


def test_auto_batch_size_trains_as_a_fixed_fit_at_the_batch_it_chose(digits):
    (x, y), _ = digits
    searched = digits_model()
    record = _EpochRecord()
    searched.fit(
        x,
        y,
        batch_size=BatchSizeFinder(min_batch_size=16, **QUICK),
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[record],
    )
    chosen = searched.batch_size_search.batch_size
    assert chosen in [t.batch_size for t in searched.batch_size_search.trials]
    assert record.planned == [math.ceil(len(x) / chosen)] * 2
    assert searched.choices["batch_size"].value == chosen

    # The search's steps are kept as training; then the fit trains as a
    # fixed fit at the chosen batch from the weights the search reached, at
    # the rate scaled from the base batch's by the sqrt rule (put back
    # after the fit).
    search = searched.batch_size_search
    assert learning_rate(searched) == pytest.approx(1e-3)
    assert search.trained_steps >= 2 * len(search.trials)  # two timed groups at least
    assert f"its {search.trained_steps:,} steps" in search.summary()
    assert int(searched.optimizer.iterations) == search.trained_steps + 2 * math.ceil(
        len(x) / chosen
    )


def test_auto_batch_size_goes_on_from_the_weights_its_search_trained(digits, monkeypatch):
    (x, y), _ = digits
    searched = digits_model()
    finder = BatchSizeFinder(min_batch_size=16, **QUICK)
    reached = {}
    original = finder.find

    def find(model, *args, **kwargs):
        result = original(model, *args, **kwargs)
        reached["snapshot"] = ModelSnapshot(model, x)  # model and optimizer
        reached["iterations"] = int(model.optimizer.iterations)
        return result

    monkeypatch.setattr(finder, "find", find)
    searched.fit(x, y, batch_size=finder, epochs=1, shuffle=False, verbose=0)
    start = digits_model()
    assert reached["iterations"] == searched.batch_size_search.trained_steps > 0
    trained = reached["snapshot"].values[: len(start.weights)]
    assert any(
        not np.allclose(a, b) for a, b in zip(trained, start.get_weights(), strict=True)
    )  # the search trained

    # A fixed fit from there, at the scaled rate, ends where the search's fit did.
    chosen = searched.batch_size_search.batch_size
    fixed = digits_model()
    snapshot = ModelSnapshot(fixed, x)
    for variable, value in zip(snapshot.variables, reached["snapshot"].values, strict=True):
        variable.assign(value)
    fixed.optimizer.learning_rate.assign(1e-3 * math.sqrt(chosen / 16))
    fixed.fit(x, y, batch_size=chosen, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(searched.get_weights(), fixed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_auto_batch_size_keeps_no_steps_trained_without_the_fit_class_weight(digits):
    (x, y), _ = digits
    model = digits_model()
    finder = BatchSizeFinder(min_batch_size=16, **QUICK)
    model.fit(x, y, batch_size=finder, epochs=1, verbose=0, class_weight={0: 2.0})
    search = model.batch_size_search
    assert search.trained_steps == 0 and "kept as training" not in search.summary()
    assert int(model.optimizer.iterations) == math.ceil(len(x) / search.batch_size)


def test_auto_batch_size_scores_batches_by_goodput(digits):
    # A noise scale of 100 samples: a batch B keeps (100 + 16) / (100 + B)
    # of a sample's progress, and is chosen by throughput times that.
    (x, y), _ = digits
    model = digits_model()
    finder = BatchSizeFinder(min_batch_size=16, **QUICK)
    finder._noise_scale = lambda *args: 100.0
    model.fit(x, y, batch_size=finder, epochs=1, verbose=0)
    search = model.batch_size_search
    assert search.objective == "goodput" and search.noise_scale == 100.0
    # Its measurement's time is reported, within the search's.
    assert 0 <= search.noise_scale_seconds <= search.seconds
    assert "noise scale 100 (measured in" in search.summary()
    for trial in search.trials:
        assert trial.efficiency == pytest.approx(116 / (100 + trial.batch_size))
        assert trial.goodput == pytest.approx(trial.samples_per_second * trial.efficiency)
    best = max(t.goodput for t in search.trials)
    good = [t.batch_size for t in search.trials if t.goodput >= best * (1 - search.margin)]
    assert search.batch_size == min(good)
    assert "goodput" in model.choices["batch_size"].reason


def test_auto_batch_size_stays_within_its_time_budget(digits):
    # Two epochs of 1,797 digits take a fraction of a second: 5% of that
    # leaves no time for a second batch, so the base batch is kept.
    (x, y), _ = digits
    model = digits_model()
    model.fit(x, y, batch_size="auto", epochs=2, verbose=0)
    search = model.batch_size_search
    assert [t.batch_size for t in search.trials] == [32]
    assert search.batch_size == 32 and search.stopped == "time budget"
    assert 0 < search.max_seconds < search.seconds
    # No batch ran faster than the base, so no noise scale was paid for.
    assert search.noise_scale is None and search.noise_scale_seconds is None
    assert "noise scale not needed" in search.summary()
    assert "time budget" in search.table()


def test_a_search_leaves_the_global_random_state_where_it_was(digits):
    (x, y), _ = digits
    model = digits_model()
    numpy_state, python_state = np.random.get_state()[1].copy(), random.getstate()
    search = BatchSizeFinder(min_batch_size=16, **QUICK).find(model, x, y)
    assert len(search.trials) > 1  # it trained, and shuffled, at several batches
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert random.getstate() == python_state


def test_the_search_is_counted_in_every_time_shown(digits):
    (x, y), _ = digits
    model = digits_model()
    stopping = EarlyStopping(monitor="loss", patience=100)
    profiler = TimingProfiler(mode="epoch", peak_flops=None)
    model.fit(
        x,
        y,
        batch_size=BatchSizeFinder(min_batch_size=16, **QUICK),
        epochs=1,
        verbose=0,
        callbacks=[stopping, profiler],
    )
    searched = model.batch_size_search.seconds
    setup = profiler.summary()["setup"]
    assert [part["what"] for part in setup["parts"]] == ["batch-size search"]
    assert setup["seconds"] == pytest.approx(searched, rel=0.05)
    assert stopping.elapsed() >= setup["seconds"] + profiler.epochs[0]["epoch_time"]
    assert "set-up before the first step" in format_summary(profiler.summary())
    # The next fit searches nothing: nothing is counted again.
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[stopping, profiler])
    assert profiler.summary()["setup"]["parts"] == []


def test_a_plain_fit_counts_the_search_of_a_later_callback(digits):
    (x, y), _ = digits
    data = ResizableDataset(x, y, batch_size=16)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    adaptive = AdaptiveBatchSize(data, schedule={1: 2}, max_batch_size="auto")
    stopping = EarlyStopping(monitor="loss", patience=100)
    model.fit(data, epochs=1, verbose=0, callbacks=[adaptive, stopping])  # ES after the search
    assert stopping.elapsed() >= adaptive.search.seconds
    # Forgotten when the fit ends: the next fit (no search) does not count it.
    assert setup_time.intervals(model) == []


def test_adaptive_batch_size_grows_a_fast_model_fed_arrays(digits, recwarn):
    (x, y), _ = digits
    model = digits_model()
    record = _EpochRecord()
    adaptive = AdaptiveBatchSize(schedule={1: 2, 2: 2}, learning_rate_rule="linear")
    history = model.fit(
        x,
        y,
        batch_size=32,
        epochs=3,
        validation_split=0.25,
        verbose=0,
        callbacks=[adaptive, record],
    )
    train = int(len(x) * 0.75)
    assert history.history["batch_size"] == [32, 64, 128]
    assert record.planned == record.ran == [math.ceil(train / b) for b in (32, 64, 128)]
    assert not [w for w in recwarn if "ran out of data" in str(w.message)]
    # Validated on the last quarter, as Keras's validation_split does.
    loss = model.evaluate(x[train:], y[train:], verbose=0)[0]
    assert history.history["val_loss"][-1] == pytest.approx(loss, rel=1e-4)
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert rate == pytest.approx(4e-3, rel=1e-5)


def test_growth_stops_at_the_largest_batch_the_search_fitted(digits):
    (x, y), _ = digits
    model = digits_model()
    adaptive = AdaptiveBatchSize(schedule={1: 1024})
    finder = BatchSizeFinder(min_batch_size=16, max_batch_size=128, **QUICK)
    history = model.fit(x, y, batch_size=finder, epochs=2, verbose=0, callbacks=[adaptive])
    limit = model.batch_size_search.max_batch_size
    assert limit <= 128
    assert history.history["batch_size"][-1] == limit


def test_auto_max_batch_size_grows_from_the_given_batch_up_to_the_fastest(digits):
    (x, y), _ = digits
    model = digits_model()
    adaptive = AdaptiveBatchSize(schedule={1: 1024}, max_batch_size="auto")
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[adaptive])
    search = model.batch_size_search
    assert search.trials[0].batch_size == 16
    assert history.history["batch_size"] == [16, search.batch_size]


def test_auto_max_batch_size_searches_itself_under_a_plain_keras_fit(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    data = ResizableDataset(x, y, batch_size=16)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    adaptive = AdaptiveBatchSize(data, schedule={1: 1024}, max_batch_size="auto")
    history = model.fit(data, epochs=2, verbose=0, callbacks=[adaptive])
    assert history is model.history  # not the search's own fits
    assert adaptive.search.trials[0].batch_size == 16
    assert history.history["batch_size"] == [16, adaptive.search.batch_size]
    assert len(history.history["loss"]) == 2


def test_auto_max_batch_size_under_a_plain_fit_needs_arrays(digits):
    (x, y), _ = digits
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = GroupedBatches(ResizableDataset(x, y, batch_size=32))
    adaptive = AdaptiveBatchSize(batches, schedule={1: 2}, max_batch_size="auto")
    with pytest.raises(ValueError, match=r"max_batch_size='auto'.*ResizableDataset"):
        model.fit(batches, epochs=1, verbose=0, callbacks=[adaptive])


def test_a_resizable_dataset_takes_the_searched_batch(digits):
    (x, y), _ = digits
    data = ResizableDataset(x, y, batch_size=8, seed=0)
    model = digits_model()
    model.fit(data, batch_size=BatchSizeFinder(min_batch_size=16, **QUICK), epochs=1, verbose=0)
    assert data.batch_size == model.batch_size_search.batch_size


def test_a_plain_model_fed_arrays_is_told_how_to_grow_the_batch(digits):
    (x, y), _ = digits
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(TypeError, match=r"FastModel.*ResizableDataset"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[AdaptiveBatchSize(schedule={1: 2})])


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 64

    def __getitem__(self, index):
        rows = slice(index * 64, (index + 1) * 64)
        return self.x[rows], self.y[rows]


def test_searching_needs_arrays_or_a_resizable_dataset(digits):
    (x, y), _ = digits
    with pytest.raises(TypeError, match=r"argument `x`.*_Batches.*ResizableDataset"):
        digits_model().fit(_Batches(x, y), batch_size="auto", epochs=1, verbose=0)


def test_adaptive_batch_size_grows_a_fast_model_fed_a_py_dataset_by_whole_batches(digits, recwarn):
    (x, y), _ = digits
    model = digits_model()
    record = _EpochRecord()
    grow = AdaptiveBatchSize(schedule={1: 2, 2: 3}, noise_scale=False)
    history = model.fit(_Batches(x, y), epochs=3, verbose=0, callbacks=[grow, record])
    source_batches = len(x) // 64
    assert history.history["batch_size"] == [64, 128, 384]
    assert record.planned == record.ran == [math.ceil(source_batches / g) for g in (1, 2, 6)]
    assert not [w for w in recwarn if "ran out of data" in str(w.message)]


def test_noise_scale_growth_measures_a_py_dataset_too(digits):
    (x, y), _ = digits
    grow = AdaptiveBatchSize(noise_scale=True, probes=2, max_batch_size=256)
    history = digits_model().fit(_Batches(x, y), epochs=2, verbose=0, callbacks=[grow])
    assert all(n > 0 for n in history.history["noise_scale"])
    assert history.history["batch_size"][1] in (64, 128, 256)


def test_adaptive_batch_size_grows_a_fast_model_fed_tf_data(digits, recwarn):
    tf = pytest.importorskip("tensorflow")
    (x, y), _ = digits
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    record = _EpochRecord()
    grow = AdaptiveBatchSize(schedule={1: 2, 2: 2})
    history = digits_model().fit(dataset, epochs=3, verbose=0, callbacks=[grow, record])
    source_batches = math.ceil(len(x) / 64)
    assert history.history["batch_size"] == [64, 128, 256]
    assert record.planned == record.ran == [math.ceil(source_batches / g) for g in (1, 2, 4)]
    assert not [w for w in recwarn if "ran out of data" in str(w.message)]


def test_tf_data_batches_read_in_order_and_start_again_for_an_earlier_batch(digits):
    tf = pytest.importorskip("tensorflow")
    (x, y), _ = digits
    batches = TFDataBatches(tf.data.Dataset.from_tensor_slices((x, y)).batch(100), group=2)
    assert (batches.batch_size, batches.multiple_of, len(batches)) == (200, 100, 8)
    np.testing.assert_array_equal(batches[1][1], y[200:400])
    np.testing.assert_array_equal(batches[0][1], y[:200])  # back to the start
    np.testing.assert_array_equal(batches[7][1], y[1400:])  # the last, shorter
    assert len(batches.sample_batch(250, None)[0]) == 250
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: b > 0).batch(10)
    with pytest.raises(ValueError, match=r"cardinality -2.*assert_cardinality"):
        TFDataBatches(unknown)


def test_grouped_batches_serve_whole_source_batches(digits):
    (x, y), _ = digits
    grouped = GroupedBatches(_Batches(x, y), group=3)
    assert (grouped.batch_size, grouped.multiple_of) == (192, 64)
    _, first_y = grouped[0]
    np.testing.assert_array_equal(first_y, y[:192])
    grouped.batch_size = 128
    assert len(grouped) == math.ceil((len(x) // 64) / 2)
    sample_x, _ = grouped.sample_batch(100, np.random.default_rng(0))
    assert len(sample_x) == 100
    with pytest.raises(ValueError, match=r"batch_size=100.*multiple of 64"):
        grouped.batch_size = 100


@pytest.mark.parametrize("batch_size", ["fastest", 0, 2.5, True])
def test_a_bad_batch_size_names_the_argument_and_what_is_allowed(digits, batch_size):
    (x, y), _ = digits
    with pytest.raises(ValueError, match=r"`batch_size`.*'auto'.*BatchSizeFinder"):
        digits_model().fit(x, y, batch_size=batch_size, epochs=1, verbose=0)


class _JitDuringFit(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.jit_compile = self.model.jit_compile


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's XLA choice")
def test_tensorflow_trains_a_growing_batch_without_xla_then_turns_it_back_on(digits, monkeypatch):
    (x, y), _ = digits
    monkeypatch.setattr(choices, "_accelerated", lambda devices: True)  # as with a GPU
    model = digits_model()
    assert model.jit_compile is True  # FastModel's automatic choice with a GPU
    seen = _JitDuringFit()
    grow = AdaptiveBatchSize(schedule={1: 2})
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[grow, seen])
    assert seen.jit_compile is False
    assert model.jit_compile is True
    assert "with a GPU" in model.choices["jit_compile"].reason


def test_an_interrupted_run_resumes_at_the_batch_it_had_grown_to(digits, tmp_path):
    (x, y), _ = digits
    schedule = {1: 2, 3: 2}
    fit_args = {"batch_size": 32, "epochs": 5, "verbose": 0}
    whole = digits_model().fit(x, y, callbacks=[AdaptiveBatchSize(schedule=schedule)], **fit_args)
    assert whole.history["batch_size"] == [32, 64, 64, 128, 128]

    first = AdaptiveBatchSize(schedule=schedule)
    model = digits_model()
    backup = BackupAndRestore(str(tmp_path), callbacks=[first])
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, callbacks=[backup, first, InterruptAtEpoch(3)], **fit_args)
    (saved,) = json.loads((tmp_path / "callback_states.json").read_text()).values()
    assert saved["batch_size"] == 64  # the backup of epoch 3's end

    # A new process builds new callbacks: the batch comes from the backup.
    second = AdaptiveBatchSize(schedule=schedule)
    resumed = model.fit(
        x, y, callbacks=[second, BackupAndRestore(str(tmp_path), callbacks=[second])], **fit_args
    )
    assert resumed.history["batch_size"] == [128, 128]  # epochs 4 and 5
    assert [change[:2] for change in second.changes] == [(1, 64), (3, 128)]


def test_adaptive_batch_size_state_is_json_and_restores_into_a_fresh_callback(digits):
    (x, y), _ = digits
    grow = AdaptiveBatchSize(schedule={1: 4})
    digits_model().fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[grow])
    state = json.loads(json.dumps(grow.get_state()))
    assert state["batch_size"] == 64 and state["changes"][0][:2] == [1, 64]
    fresh = AdaptiveBatchSize(schedule={1: 4})
    fresh.set_state(state)
    history = digits_model().fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[fresh])
    assert history.history["batch_size"] == [64]
