"""Real multi-worker jobs on localhost: two worker processes per engine.

Each test starts tests/scripts/worker.py twice through the engine's own
launch convention (TF_CONFIG for MultiWorkerMirroredStrategy, Keras's
KERAS_DISTRIBUTION_* variables for JAX multi-process, `horovodrun --gloo`
for Horovod), with a hard timeout, and compares what the workers report.
An engine runs in the suite pass of its backend.
"""

import importlib.util
import json
import math
import os
import re
import shutil
import sys
import time

import keras
import pytest

from keras_fastrain.distribute.local_launch import launch_local

BACKEND = keras.backend.backend()
WORKER = os.path.join(os.path.dirname(__file__), "scripts", "worker.py")
TIMEOUT = 240
HOROVOD = importlib.util.find_spec("horovod") is not None
ENGINES = {
    "tensorflow": ["multi_worker", "horovod"],
    "jax": ["jax_multi_process"],
}.get(BACKEND, [])
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")

pytestmark = pytest.mark.skipif(
    not ENGINES, reason="multi-worker engines run on TensorFlow and JAX"
)


@pytest.fixture(params=ENGINES)
def engine(request):
    if request.param == "horovod" and not (HOROVOD and shutil.which(HOROVODRUN)):
        pytest.skip("Horovod is not installed: scripts/build_horovod.sh")
    return request.param


def launch(engine, scenario, *args, size=2):
    """[(returncode, results, output)] of each worker, in rank order."""
    outcomes = launch_local(engine, [WORKER, scenario, *args], size=size, timeout=TIMEOUT)
    return [
        (
            o.returncode,
            json.loads(o.lines_with("RESULT ")[0]) if o.lines_with("RESULT ") else None,
            o.output,
        )
        for o in outcomes
    ]


def results_of(outcomes):
    for code, results, output in outcomes:
        assert code == 0 and results is not None, output[-3000:]
    return [results for _, results, _ in outcomes]


def test_collectives_reduce_gather_and_broadcast_over_the_workers(engine):
    zero, one = results_of(launch(engine, "collectives"))
    assert zero["engine"] == one["engine"] == engine
    assert (zero["rank"], one["rank"], zero["size"]) == (0, 1, 2)
    assert (zero["local_rank"], one["local_rank"]) == (0, 1)  # both on localhost
    assert (zero["is_chief"], one["is_chief"]) == (True, False)
    for worker in (zero, one):
        assert worker["mean"] == 0.5
        assert worker["sum"] == [1.0, 2.0]
        assert worker["max"] == 4
        assert worker["gathered"] == [[0, 0], [1, 10]]
        assert worker["broadcast"] == [6.0]
        assert worker["consensus_gather"] == [{"rank": 0, "text": "x"}, {"rank": 1, "text": "xx"}]
        assert worker["any_worker"] is True and worker["none_worker"] is False
        assert worker["averaged_logs"] == {"loss": 0.5, "accuracy": 1.0}


@pytest.mark.skipif(
    BACKEND == "jax",
    reason="JAX multi-process keeps one global copy of each variable: workers cannot diverge",
)
def test_broadcast_makes_different_weights_equal_also_after_a_restore(engine):
    zero, one = results_of(launch(engine, "broadcast"))
    assert zero["before"] != one["before"]
    assert zero["restored"] != one["restored"]  # a restore after the callback's train begin
    assert zero["after"] == one["after"] == pytest.approx(zero["restored"])


def test_fit_trains_in_step_and_stops_every_worker_at_the_same_epoch(engine):
    zero, one = results_of(launch(engine, "fit"))
    # Worker 1 asked to stop after epoch 1; worker 0 stopped with it.
    assert zero["epochs"] == one["epochs"] == 2
    assert zero["checksum"] == pytest.approx(one["checksum"], rel=1e-6)
    # Pruned to 50% with masks equal on both workers (layers of 8*8*32 and 32*10).
    assert zero["masks"] == one["masks"] == [1024.0, 160.0]
    assert zero["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert zero["val_losses"] == pytest.approx(one["val_losses"], rel=1e-5)
    assert zero["evaluation"] == pytest.approx(one["evaluation"], rel=1e-5)
    assert zero["losses"][1] < zero["losses"][0]
    # Warm-up over 2 epochs: 0.1 / 2 workers at the start, 0.075 half way.
    assert zero["rates"] == pytest.approx([0.05, 0.075])


def test_horovod_style_code_on_a_plain_model_trains_in_step(engine):
    zero, one = results_of(launch(engine, "plain"))
    assert zero["checksum"] == pytest.approx(one["checksum"], rel=1e-6)
    assert zero["losses"] == pytest.approx(one["losses"], rel=1e-5)  # averaged by the callback
    assert zero["losses"][-1] < zero["losses"][0]
    if engine == "multi_worker":
        assert zero["accumulation"] == 1
        assert "cannot run under a tf.distribute strategy" in zero["refused"]
    else:
        assert zero["accumulation"] == 2


@pytest.mark.parametrize("variant", ["plain", "fast", "one_callback"])
def test_horovods_keras_example_ends_with_equal_weights(engine, variant):
    # `import keras_fastrain.horovod as hvd`; a Sequential without an Input,
    # built at the top level from a different seed on each worker, and
    # checkpoints written by rank 0 only.
    zero, one = results_of(launch(engine, "horovod_example", variant))
    assert zero["sizes"] == [2, 2, 0, True] and one["sizes"] == [2, 2, 1, True]
    assert zero["allreduce"] == one["allreduce"] == 1.0
    assert zero["allgather"] == one["allgather"] == [[0], [1]]
    assert zero["broadcast"] == one["broadcast"] == 2.0
    assert zero["checksum"] == pytest.approx(one["checksum"], rel=1e-6)
    assert zero["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert zero["losses"][-1] < zero["losses"][0]
    assert zero["checkpoints"] == [f"checkpoint-{epoch}.keras" for epoch in (1, 2, 3)]
    assert one["checkpoints"] == []


@pytest.mark.skipif(
    BACKEND == "jax",
    reason="JAX multi-process keeps one global copy of each variable: workers cannot diverge",
)
def test_workers_whose_weights_differ_are_stopped_with_a_clear_error(engine):
    outcomes = launch(engine, "diverge")
    # Worker 1 moves apart at the end of epoch 2: the check runs then, or at
    # epoch 3 where it comes before that callback (Horovod's metric averaging
    # goes first in the list).
    for code, results, output in outcomes[: 1 if engine == "horovod" else 2]:
        assert code != 0 and results is None
        assert re.search(
            r"WorkersDisagreeError: .* at the end of epoch [23] \(worker 0: sum", output
        )


def test_every_worker_searches_and_grows_to_the_same_batch(engine):
    zero, one = results_of(launch(engine, "batch_size"))
    assert zero["trials"] == one["trials"]
    assert zero["chosen"] == one["chosen"] and zero["chosen"] % 2 == 0
    assert zero["largest"] == one["largest"] <= 256 and zero["largest"] % 2 == 0
    assert zero["checksum"] == pytest.approx(one["checksum"], rel=1e-6)
    chosen, largest = zero["chosen"], zero["largest"]  # both split over 2 workers
    grown = [chosen, min(2 * chosen, largest), min(4 * chosen, largest)]
    assert zero["batch_sizes"] == one["batch_sizes"] == grown
    # Every worker takes one step per global batch of the 1024 rows.
    assert zero["steps"] == one["steps"] == [math.ceil(1024 / batch) for batch in grown]
    # A PyDataset's batches, two at a time from the second epoch on.
    assert zero["grouped_steps"] == one["grouped_steps"] == [16, 8]
    first, second = zero["grouped_batch_sizes"]
    assert second == 2 * first == 2 * (32 if engine == "multi_worker" else 64)

    # Each full pass over a ResizableDataset serves one epoch at its grown size
    # (before them, Keras's first look at the data reads a few batches: how
    # many depends on prefetching, so only whole passes are compared).
    def epochs(served):
        return [p for p in served if len(p) == math.ceil(256 / p[0][1])][-3:]

    assert [{size for _, size in p} for p in epochs(zero["served"])] == [{32}, {64}, {128}]
    assert len(zero["served"]) == len(one["served"])  # as many shuffles on each worker
    if engine == "multi_worker":  # global data: the same rows, in the same order
        assert epochs(zero["served"]) == epochs(one["served"])
    assert zero["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert zero["noise_scales"] == pytest.approx(one["noise_scales"], rel=1e-6)
    assert zero["noise_batch_sizes"] == one["noise_batch_sizes"]
    assert zero["noise_batch_sizes"][0] == 32 and all(n > 0 for n in zero["noise_scales"])


def test_the_moving_average_is_kept_or_dropped_alike_on_every_worker(engine):
    zero, one = results_of(launch(engine, "measured_ema"))
    # Each worker scored its own validation rows; the decision used the
    # scores averaged over both, so it is the same everywhere.
    assert zero["kept"] is not None and zero["kept"] == one["kept"]
    assert zero["scores"] == pytest.approx(one["scores"], rel=1e-6)
    assert zero["checksum"] == pytest.approx(one["checksum"], rel=1e-6)


def test_a_worker_that_dies_makes_the_other_fail_not_hang(engine):
    start = time.monotonic()
    (code_zero, results_zero, output), (code_one, _, _) = launch(engine, "die")
    assert code_zero is not None, "worker 0 hung until the test's timeout"
    if engine != "horovod":  # horovodrun reports one code for the job
        assert code_one == 3
    assert code_zero != 0 and results_zero is None, output[-2000:]
    assert time.monotonic() - start < TIMEOUT
