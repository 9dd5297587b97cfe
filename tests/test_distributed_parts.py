"""The distributed parts in one process: the one-process engine's collectives,
the Horovod-style callbacks and DistributedOptimizer where there is nothing to
exchange, and how data is split over workers. Real multi-worker jobs are in
test_multi_worker.py."""

import logging

import keras
import numpy as np
import pytest

from keras_fastrain import DistributedOptimizer, distribute
from keras_fastrain.callbacks import (
    BroadcastGlobalVariablesCallback,
    LearningRateWarmupCallback,
    MetricAverageCallback,
)
from keras_fastrain.distribute.sharding import worker_rows
from tests.helpers import digits_model

pytestmark = pytest.mark.smoke


def test_one_process_is_rank_zero_of_one_and_its_collectives_are_the_identity():
    engine = distribute.current()
    assert (engine.rank, engine.size, engine.local_rank, engine.is_chief) == (0, 1, 0, True)
    assert engine.allreduce(3, "sum") == 3 and isinstance(engine.allreduce(3, "sum"), int)
    np.testing.assert_array_equal(engine.allreduce(np.array([1.0, 2.0]), "mean"), [1.0, 2.0])
    np.testing.assert_array_equal(engine.allgather(np.array([4, 5])), [[4, 5]])
    assert engine.broadcast(7.5) == 7.5
    engine.barrier()
    with pytest.raises(ValueError, match=r"Received: op='median'"):
        engine.allreduce(1.0, "median")
    with pytest.raises(ValueError, match=r"Received: root_rank=1"):
        engine.broadcast(1.0, root_rank=1)


def test_the_callbacks_change_nothing_in_one_process(digits):
    (x, y), _ = digits
    model = digits_model()
    warmup = LearningRateWarmupCallback(initial_lr=1e-3, warmup_epochs=1)
    history = model.fit(
        x[:256],
        y[:256],
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[MetricAverageCallback(), BroadcastGlobalVariablesCallback(0), warmup],
    )
    reference = digits_model()
    expected = reference.fit(x[:256], y[:256], batch_size=64, epochs=2, verbose=0)
    assert history.history["loss"] == pytest.approx(expected.history["loss"], rel=1e-5)
    assert warmup.learning_rate_at(0.0) == warmup.learning_rate_at(1.0) == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: BroadcastGlobalVariablesCallback(-1), ValueError, r"root_rank=-1"),
        (lambda: LearningRateWarmupCallback(0.0), ValueError, r"initial_lr=0.0"),
        (lambda: LearningRateWarmupCallback(0.1, warmup_epochs=-1), ValueError, r"warmup_epochs"),
        (
            lambda: LearningRateWarmupCallback(0.1, momentum_correction="yes"),
            TypeError,
            r"momentum_correction='yes'",
        ),
        (lambda: DistributedOptimizer("adam"), TypeError, r"optimizer='adam'"),
        (
            lambda: DistributedOptimizer(keras.optimizers.SGD(), backward_passes_per_step=0),
            ValueError,
            r"backward_passes_per_step=0",
        ),
        (
            lambda: DistributedOptimizer(keras.optimizers.SGD(), compression="int8"),
            ValueError,
            r"compression='int8'",
        ),
        (
            lambda: DistributedOptimizer(keras.optimizers.SGD(), compression="fp16"),
            ValueError,
            r"applies to Horovod's gradient exchange",
        ),
    ],
)
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_the_warmup_refuses_an_optimizer_with_a_schedule(digits):
    (x, y), _ = digits
    model = digits_model()
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"LearningRateSchedule"):
        model.fit(x[:64], y[:64], verbose=0, callbacks=[LearningRateWarmupCallback(1e-3)])


def test_distributed_optimizer_needs_no_exchange_here_and_says_so_once(caplog):
    sgd = keras.optimizers.SGD(0.1)
    with caplog.at_level(logging.INFO, logger="keras_fastrain"):
        assert DistributedOptimizer(sgd) is sgd
        DistributedOptimizer(keras.optimizers.SGD(0.1))
    said = [r for r in caplog.records if "already averages gradients" in r.getMessage()]
    assert len(said) <= 1  # once per process (an earlier test may have said it)
    with pytest.warns(UserWarning, match=r"averaged .*Horovod sums them by default"):
        accumulating = DistributedOptimizer(keras.optimizers.Adam(1e-3), backward_passes_per_step=4)
    assert isinstance(accumulating, keras.optimizers.Adam)
    assert accumulating.gradient_accumulation_steps == 4
    averaging = DistributedOptimizer(
        keras.optimizers.Adam(1e-3), backward_passes_per_step=2, average_aggregated_gradients=True
    )
    assert averaging.gradient_accumulation_steps == 2
    built = keras.optimizers.SGD()
    built.build([keras.Variable(np.zeros(2))])
    with pytest.raises(ValueError, match=r"already holds state"):
        DistributedOptimizer(built)


@pytest.mark.parametrize(("samples", "batch", "size"), [(20, 4, 2), (23, 6, 2), (30, 6, 3)])
def test_workers_split_every_global_batch_between_them(samples, batch, size):
    shares = [worker_rows(samples, batch, rank, size) for rank in range(size)]
    usable = samples - samples % size
    assert sorted(np.concatenate(shares).tolist()) == list(range(usable))
    assert len({len(share) for share in shares}) == 1
    # Step i of every worker comes from global batch i, as in one process.
    per_worker = batch // size
    for step in range(usable // batch):
        rows = np.concatenate(
            [share[step * per_worker : (step + 1) * per_worker] for share in shares]
        )
        assert sorted(rows.tolist()) == list(range(step * batch, (step + 1) * batch))


def test_a_global_batch_that_does_not_split_over_the_workers_is_refused():
    with pytest.raises(ValueError, match=r"batch_size=5. Expected a multiple of the 2 workers"):
        worker_rows(100, 5, 0, 2)


def test_engine_timeouts_are_checked_before_anything_starts():
    if keras.backend.backend() == "tensorflow":
        from keras_fastrain.distribute.tf_multi_worker import MultiWorkerEngine

        with pytest.raises(ValueError, match=r"Received: timeout_seconds=0"):
            MultiWorkerEngine(timeout_seconds=0)
    from keras_fastrain.distribute.jax_multi_process import JaxMultiProcessEngine

    with pytest.raises(ValueError, match=r"Received: heartbeat_timeout_seconds=0"):
        JaxMultiProcessEngine(heartbeat_timeout_seconds=0)


def test_explicit_engines_need_their_launch():
    with pytest.raises(ValueError, match=r"Received: distribute='cluster'"):
        distribute.init("cluster")


def test_a_warmup_of_zero_epochs_needs_no_step_count(digits):
    (x, y), _ = digits
    model = digits_model()
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")

    def batches():  # a generator: fit does not know the steps per epoch
        for start in range(0, 256, 64):
            yield x[start : start + 64], y[start : start + 64]

    model.fit(batches(), verbose=0, callbacks=[LearningRateWarmupCallback(0.05, warmup_epochs=0)])
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.05)


def test_the_agreement_fingerprints_compare_both_sums():
    from keras_fastrain.callbacks.agreement import disagreement

    assert disagreement([[1.0, 2.0], [1.0, 2.0]]) is None
    assert disagreement([[1e6, 2e6], [1e6 + 1e-3, 2e6]]) is None  # reduction-order noise
    found = disagreement([[1.0, 2.0], [1.0, 3.0]])  # equal sums, different absolute sums
    assert found == "worker 0: sum 1, absolute sum 2, worker 1: sum 1, absolute sum 3"


def test_horovods_optimizer_class_says_what_it_is_and_round_trips(tmp_path):
    from keras_fastrain.distribute.horovod import distributed_optimizer_class

    distributed_adam = distributed_optimizer_class(keras.optimizers.Adam)
    assert distributed_adam.__name__ == "DistributedAdam"
    assert distributed_optimizer_class(keras.optimizers.Adam) is distributed_adam
    assert distributed_optimizer_class(distributed_adam) is distributed_adam
    config = {**keras.optimizers.Adam(0.01).get_config(), "compression": "fp16"}
    optimizer = distributed_adam.from_config(config)
    assert isinstance(optimizer, keras.optimizers.Adam) and optimizer.averages_over_workers
    again = type(optimizer).from_config(optimizer.get_config())
    assert type(again) is distributed_adam and again.get_config() == optimizer.get_config()
    assert again.compression == "fp16"
    with pytest.raises(ValueError, match=r"Received: compression='zip'"):
        distributed_adam(compression="zip")
    with pytest.raises(TypeError, match=r"Received: optimizer_class='adam'"):
        distributed_optimizer_class("adam")
    with pytest.raises(ValueError, match=r"DistributedAdam, which already averages"):
        DistributedOptimizer(distributed_adam())

    # Saved under its own name, it loads back as the same class, with its state.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer, "mse")
    model.fit(np.ones((8, 4)), np.ones((8, 2)), batch_size=4, verbose=0)
    model.save(tmp_path / "model.keras")
    distributed_optimizer_class(keras.optimizers.SGD)  # the last class registered is not Adam
    loaded = keras.saving.load_model(tmp_path / "model.keras").optimizer
    assert type(loaded) is distributed_adam and loaded.compression == "fp16"
    assert int(keras.ops.convert_to_numpy(loaded.iterations)) == 2


def test_horovods_optimizer_class_applies_gradients_as_they_are_outside_a_job():
    from keras_fastrain.distribute.horovod import distributed_optimizer_class

    x, y = np.random.default_rng(0).normal(size=(2, 32, 4))
    sgd = keras.optimizers.SGD
    trained = []
    for optimizer_class in (sgd, distributed_optimizer_class(sgd)):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
        model.compile(optimizer_class(0.1), "mse")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        trained.append(model.get_weights())
    for plain, distributed in zip(*trained, strict=True):
        # Equal up to float32 rounding (torch's CPU kernels are not bitwise
        # reproducible from one fit to the next).
        np.testing.assert_allclose(distributed, plain, rtol=1e-5, atol=1e-7)


def test_engine_names_single_process_multi_worker_and_launchable():
    from keras_fastrain.distribute import local_launch

    assert set(distribute.SINGLE_PROCESS_ENGINES).isdisjoint(distribute.MULTI_WORKER_ENGINES)
    assert set(local_launch.LAUNCHABLE_ENGINES) == set(distribute.MULTI_WORKER_ENGINES)
    with pytest.raises(ValueError, match=r"Received: engine='mirrored'"):
        local_launch.launch_local("mirrored", ["script.py"])
    with pytest.raises(ValueError, match=r"Received: engine='horovod'"):
        local_launch.worker_environments("horovod", 2)  # horovodrun sets its own
