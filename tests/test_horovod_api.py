"""`keras_fastrain.horovod`: Horovod's Keras names, in one process.

Two real workers run Horovod's example through it in test_multi_worker.py;
here each name's contract is checked where the answers are known: one
process is rank 0 of 1.
"""

import keras
import numpy as np
import pytest

import keras_fastrain.horovod as hvd
from keras_fastrain.callbacks import BroadcastGlobalVariablesCallback, MetricAverageCallback
from tests.helpers import digits_model

pytestmark = pytest.mark.smoke


def test_ranks_and_sizes_are_integers_of_one_process():
    hvd.init()
    assert hvd.is_initialized()
    assert (hvd.size(), hvd.rank(), hvd.local_rank(), hvd.local_size()) == (1, 0, 0, 1)


def test_collectives_take_horovods_arguments_and_return_numpy():
    assert hvd.allreduce(3.0) == 3.0
    assert hvd.allreduce(np.array([1.0, 2.0]), op=hvd.Sum).tolist() == [1.0, 2.0]
    assert hvd.allreduce(2.0, average=False) == 2.0
    assert hvd.allreduce(4, op=hvd.Max) == 4
    with pytest.raises(ValueError, match=r"`op`.*Received: op='min'"):
        hvd.allreduce(1.0, op="min")
    # Horovod concatenates along the first axis.
    assert hvd.allgather(np.array([[1, 2], [3, 4]])).tolist() == [[1, 2], [3, 4]]
    assert hvd.broadcast(np.array([5.0]), root_rank=0).tolist() == [5.0]


def test_distributed_optimizer_takes_horovods_arguments_in_order():
    optimizer = hvd.DistributedOptimizer(
        keras.optimizers.SGD(0.1), "named", "", "", hvd.Compression.none, False
    )
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.name == "named"
    with pytest.raises(ValueError, match=r"`gradient_predivide_factor`.*Expected 1\.0"):
        hvd.DistributedOptimizer(keras.optimizers.SGD(), gradient_predivide_factor=2.0)
    with pytest.raises(ValueError, match=r"`op`.*Received: op='sum'"):
        hvd.DistributedOptimizer(keras.optimizers.SGD(), op=hvd.Sum)
    with pytest.raises(ValueError, match=r"compression='fp16' applies to Horovod"):
        hvd.DistributedOptimizer(keras.optimizers.SGD(), compression=hvd.Compression.fp16)


def test_callbacks_are_the_packages_own_plus_one_that_does_both(digits):
    assert hvd.callbacks.BroadcastGlobalVariablesCallback is BroadcastGlobalVariablesCallback
    assert hvd.callbacks.MetricAverageCallback is MetricAverageCallback
    (x, y), _ = digits
    model = digits_model()
    before = model.get_weights()
    history = model.fit(
        x[:256], y[:256], epochs=2, verbose=0, callbacks=[hvd.callbacks.HorovodCallback(0)]
    )
    assert len(history.history["loss"]) == 2
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    with pytest.raises(ValueError, match=r"`root_rank`.*Received: root_rank=-1"):
        hvd.callbacks.HorovodCallback(-1)


class RateAtBatchStart(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        rate = self.model.optimizer.learning_rate
        self.rates.append(round(float(keras.ops.convert_to_numpy(rate)), 6))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # A number: multiplier ** epoch, once an epoch, from start_epoch.
        ({"multiplier": 0.5, "start_epoch": 1}, [0.1] * 4 + [0.05] * 4 + [0.025] * 4),
        # A function of the fractional epoch, every batch, until end_epoch.
        (
            {"multiplier": lambda epoch: 1 + epoch, "staircase": False, "end_epoch": 2},
            [0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.275] + [0.275] * 4,
        ),
    ],
)
def test_the_learning_rate_schedule_follows_horovods_rule(kwargs, expected, digits):
    (x, y), _ = digits
    model = digits_model()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    schedule = hvd.callbacks.LearningRateScheduleCallback(0.1, **kwargs)
    seen = RateAtBatchStart()
    history = model.fit(
        x[:128], y[:128], batch_size=32, epochs=3, verbose=0, callbacks=[schedule, seen]
    )
    assert seen.rates == pytest.approx(expected)
    # Logged as `lr` at each epoch's end, as Horovod logs it: its last rate.
    assert history.history["lr"] == pytest.approx([expected[3], expected[7], expected[11]])
    with pytest.raises(TypeError, match=r"`multiplier`.*Received: multiplier='x'"):
        hvd.callbacks.LearningRateScheduleCallback(0.1, "x")
    with pytest.raises(ValueError, match=r"`end_epoch`.*Received: end_epoch=1"):
        hvd.callbacks.LearningRateScheduleCallback(0.1, 0.5, start_epoch=2, end_epoch=1)


def test_average_false_or_zero_sums_and_names_both_when_both_are_given():
    # One process: the sum and the mean of one value agree, so check the op chosen.
    assert hvd.allreduce(np.array([2.0]), average=0).tolist() == [2.0]
    with pytest.raises(ValueError, match=r"average=True and op='sum'"):
        hvd.allreduce(1.0, average=True, op=hvd.Sum)


def test_ranks_before_init_in_a_launched_job_are_an_error_as_in_horovod(monkeypatch):
    monkeypatch.setattr(hvd, "_initialized", False)
    monkeypatch.setenv("HOROVOD_SIZE", "2")
    with pytest.raises(ValueError, match=r"use hvd\.init\(\)"):
        hvd.size()
    monkeypatch.delenv("HOROVOD_SIZE")
    assert hvd.size() == 1  # no launch: one process, as before


def test_the_rate_change_rescales_sgd_momentum_only():
    from keras_fastrain.callbacks.learning_rate import change_rate

    for optimizer, rescaled in (
        (keras.optimizers.SGD(0.1, momentum=0.9), True),
        (keras.optimizers.Adam(0.1, use_ema=True), False),
    ):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer, "mse")
        model.train_on_batch(np.ones((4, 3)), np.ones((4, 2)))
        state = [keras.ops.convert_to_numpy(v.value) for v in optimizer.variables[2:]]
        assert change_rate(model, 0.05, momentum_correction=True) == pytest.approx(0.1)
        after = [keras.ops.convert_to_numpy(v.value) for v in optimizer.variables[2:]]
        for before, now in zip(state, after, strict=True):
            np.testing.assert_allclose(now, before * (0.5 if rescaled else 1.0), rtol=1e-6)
