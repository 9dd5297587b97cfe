"""Pruning schedules and masks equal tfmot's, on every backend.

tfmot itself is the oracle: it runs in a subprocess (importing it switches
tf.keras to the legacy Keras for the whole process), on the same steps and
the same weights, and its answers are compared with keras-fastrain's.
"""

import importlib.util
import json
import pathlib

import keras
import numpy as np
import pytest

from keras_fastrain.pruning import (
    ConstantSparsity,
    PolynomialDecay,
    block_mask,
    m_by_n_mask,
    magnitude_mask,
)
from keras_fastrain.pruning.schedules import schedule_values
from tests.helpers import run_python_args

# Not imported here: importing tfmot sets TF_USE_LEGACY_KERAS=1 for the process.
pytestmark = [
    pytest.mark.smoke,
    pytest.mark.skipif(
        importlib.util.find_spec("tensorflow_model_optimization") is None,
        reason="the oracle needs tensorflow-model-optimization (the test extra)",
    ),
]

ORACLE = pathlib.Path(__file__).parent / "scripts" / "tfmot_oracle.py"
RNG = np.random.default_rng(7)

SCHEDULES = [
    (
        ConstantSparsity,
        {"target_sparsity": 0.8, "begin_step": 10, "end_step": 200, "frequency": 25},
    ),
    (ConstantSparsity, {"target_sparsity": 0.5, "begin_step": 0}),
    (
        PolynomialDecay,
        {
            "initial_sparsity": 0.1,
            "final_sparsity": 0.85,
            "begin_step": 100,
            "end_step": 1100,
            "power": 3,
            "frequency": 50,
        },
    ),
    (
        PolynomialDecay,
        {"initial_sparsity": 0.0, "final_sparsity": 0.8, "begin_step": 0, "end_step": 999},
    ),
]
STEPS = [0, 1, 9, 10, 35, 50, 99, 100, 150, 200, 210, 333, 600, 999, 1000, 1100, 1150, 5000]


def weights(*shape):
    return RNG.normal(size=shape).astype("float32")


TIED = np.repeat(np.arange(10, dtype="float32"), 3).reshape(6, 5)  # ties at every threshold
MASKS = (
    [{"weights": weights(20, 30), "sparsity": s} for s in (0.0, 0.3, 0.5, 0.8, 0.95, 0.999)]
    + [{"weights": TIED, "sparsity": s} for s in (0.25, 0.5)]
    + [{"weights": weights(3, 3, 4, 8), "sparsity": 0.6}]
    + [
        {"weights": weights(21, 30), "sparsity": 0.5, "block_size": [2, 2], "pooling": p}
        for p in ("AVG", "MAX")
    ]
    + [{"weights": weights(13, 10), "sparsity": 0.7, "block_size": [4, 3], "pooling": "AVG"}]
    + [{"weights": weights(16, 12), "m_by_n": [2, 4]}]
    + [{"weights": weights(10, 8), "m_by_n": [2, 4]}]  # 10 input channels: a padded group
    + [{"weights": weights(3, 3, 6, 8), "m_by_n": [2, 4]}]
    + [{"weights": weights(8, 6), "m_by_n": [1, 4]}]
)


@pytest.fixture(scope="module")
def tfmot():
    cases = {
        "schedules": [
            {"class_name": cls.__name__, "config": config, "steps": STEPS}
            for cls, config in SCHEDULES
        ],
        "masks": [{**case, "weights": np.asarray(case["weights"]).tolist()} for case in MASKS],
    }
    result = run_python_args(
        [str(ORACLE)],
        env={"KERAS_BACKEND": "tensorflow"},
        input_text=json.dumps(cases),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("index", range(len(SCHEDULES)))
def test_schedules_equal_tfmot(tfmot, index):
    cls, config = SCHEDULES[index]
    schedule = cls(**config)
    ours = [schedule_values(schedule, step) for step in STEPS]
    for step, (prune, sparsity), (their_prune, their_sparsity) in zip(
        STEPS, ours, tfmot["schedules"][index], strict=True
    ):
        assert prune == their_prune, step
        assert sparsity == pytest.approx(their_sparsity, abs=1e-7), step


@pytest.mark.parametrize("index", range(len(MASKS)))
def test_masks_equal_tfmot(tfmot, index):
    case = MASKS[index]
    w = keras.ops.convert_to_tensor(case["weights"])
    if "m_by_n" in case:
        mask = m_by_n_mask(w, tuple(case["m_by_n"]))
    elif "block_size" in case:
        mask = block_mask(w, case["sparsity"], case["block_size"], case["pooling"])
    else:
        mask = magnitude_mask(w, case["sparsity"])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), tfmot["masks"][index])


def test_a_masked_weight_has_the_asked_sparsity():
    w = keras.ops.convert_to_tensor(weights(50, 40))
    for sparsity in (0.1, 0.5, 0.8, 0.9):
        kept = float(keras.ops.convert_to_numpy(keras.ops.mean(magnitude_mask(w, sparsity))))
        assert kept == pytest.approx(1 - sparsity, abs=1 / 2000)
    mask = keras.ops.convert_to_numpy(m_by_n_mask(keras.ops.convert_to_tensor(weights(8, 16))))
    groups = mask.T.reshape(-1, 4)  # every 4 input channels of an output channel
    assert (groups.sum(axis=1) == 2).all()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: ConstantSparsity(1.0, 0), ValueError, r"target_sparsity=1\.0.*\[0, 1\)"),
        (lambda: ConstantSparsity(-0.1, 0), ValueError, r"target_sparsity=-0\.1"),
        (lambda: PolynomialDecay(0.0, 1.2, 0, 10), ValueError, r"final_sparsity=1\.2"),
        (lambda: PolynomialDecay(0.0, 0.5, 100, 50), ValueError, r"end_step=50.*>= begin_step"),
        (lambda: PolynomialDecay(0.0, 0.5, 0, -1), ValueError, r"end_step=-1"),
        (lambda: ConstantSparsity(0.5, -3), ValueError, r"begin_step=-3"),
        (lambda: ConstantSparsity(0.5, 0, frequency=0), ValueError, r"frequency=0"),
        (
            lambda: m_by_n_mask(keras.ops.ones((2, 3, 4)), (2, 4)),
            ValueError,
            r"needs a Dense \(2-D\) or Conv2D \(4-D\) kernel.*\(2, 3, 4\)",
        ),
        (lambda: m_by_n_mask(keras.ops.ones((4, 4)), (4, 4)), ValueError, r"0 < m < n"),
        (
            lambda: block_mask(keras.ops.ones((2, 2, 2)), 0.5, (2, 2)),
            ValueError,
            r"Block sparsity needs 2-D weights",
        ),
        (
            lambda: block_mask(keras.ops.ones((4, 4)), 0.5, (2, 2), "MEAN"),
            ValueError,
            r"block_pooling_type='MEAN'",
        ),
    ],
)
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_schedule_config_round_trips():
    schedule = PolynomialDecay(0.1, 0.8, 0, 100, power=2, frequency=10)
    again = PolynomialDecay.from_config(schedule.get_config()["config"])
    for step in range(0, 120, 7):
        assert schedule_values(again, step) == schedule_values(schedule, step)


@pytest.mark.parametrize(
    "schedule",
    [
        ConstantSparsity(0.6, begin_step=3, end_step=50, frequency=4),
        PolynomialDecay(0.1, 0.9, begin_step=5, end_step=60),
    ],
)
def test_calling_a_schedule_gives_tensors_as_tfmot_also_for_a_tensor_step(schedule):
    for step in (0, 3, 5, 7, 33, 60, 61, 200):
        for given in (step, keras.ops.convert_to_tensor(step, "int32")):
            should_prune, sparsity = schedule(given)
            assert keras.ops.is_tensor(should_prune) and keras.ops.is_tensor(sparsity)
            assert keras.backend.standardize_dtype(sparsity.dtype) == "float32"
            assert bool(keras.ops.convert_to_numpy(should_prune)) == schedule.should_prune(step)
            value = float(keras.ops.convert_to_numpy(sparsity))
            assert value == pytest.approx(schedule.sparsity(step), abs=1e-6)
