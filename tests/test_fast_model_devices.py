"""The same FastModel script trains on 1 and on 2 local devices, unchanged.

Each run is a process of its own (devices are fixed when the backend
starts): TensorFlow splits the CPU into two logical devices and FastModel
picks MirroredStrategy; JAX gets two host devices and FastModel picks
keras.distribution.DataParallel. With the same seed and global batch, the
two runs must end with the same weights.
"""

import json
import pathlib

import keras
import numpy as np
import pytest

from tests.helpers import run_python_args

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "two_devices.py"
BACKEND = keras.backend.backend()

pytestmark = pytest.mark.skipif(
    BACKEND not in ("tensorflow", "jax"), reason="Keras 3.15 distributes on TensorFlow and JAX"
)


def train(devices, *options):
    result = run_python_args([str(SCRIPT), str(devices), *options], env={"KERAS_BACKEND": BACKEND})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs():
    return train(1), train(2)


def test_two_local_devices_are_used_with_the_engine_of_the_backend(runs):
    one, two = runs
    assert one["replicas"] == 1 and one["engine"] == "none"
    assert two["replicas"] == 2
    expected = "MirroredStrategy" if BACKEND == "tensorflow" else "DataParallel"
    assert two["engine"].startswith(expected)
    if BACKEND == "tensorflow":  # keras#19246: one step per call under tf.distribute
        assert two["choices"]["steps_per_execution"] == 1
        assert two["choices"]["jit_compile"] is False


def test_two_devices_train_to_the_same_weights_as_one(runs):
    one, two = runs
    np.testing.assert_allclose(one["loss"], two["loss"], rtol=1e-5)
    assert one["loss"][-1] < one["loss"][0] / 2
    for a, b in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(one["test"], two["test"], rtol=1e-5)
    np.testing.assert_allclose(one["predictions"], two["predictions"], atol=1e-6)


def test_a_last_batch_that_cannot_split_evenly_is_a_clear_error_on_jax(runs):
    one, two = runs
    assert one["uneven_error"] is None
    if BACKEND == "jax":
        assert "splits every batch evenly over 2 devices" in two["uneven_error"]
        assert "x[:358]" in two["uneven_error"]
    else:  # tf.distribute splits uneven batches itself
        assert two["uneven_error"] is None


def test_pruning_masks_are_the_same_on_two_devices_as_on_one():
    one, two = train(1, "prune"), train(2, "prune")
    assert two["replicas"] == 2
    np.testing.assert_allclose(one["loss"], two["loss"], rtol=1e-5)
    for a, b in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    masks = [np.asarray(w) for w in two["weights"] if set(np.unique(w)) <= {0.0, 1.0}]
    assert masks and all((mask == 0).mean() == pytest.approx(0.6, abs=1e-2) for mask in masks)
