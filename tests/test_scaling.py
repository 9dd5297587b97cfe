"""Learning-rate scaling rules."""

import math

import pytest

from keras_fastrain.scaling import scaled_learning_rate

pytestmark = pytest.mark.smoke


def test_linear_rule_scales_with_the_batch():
    assert scaled_learning_rate(0.1, 256, 1024, rule="linear") == pytest.approx(0.4)


def test_sqrt_rule_scales_with_its_square_root():
    assert scaled_learning_rate(1e-3, 32, 512, rule="sqrt") == pytest.approx(4e-3)
    assert scaled_learning_rate(1e-3, 64, 32) == pytest.approx(1e-3 / math.sqrt(2))


def test_none_keeps_the_rate():
    assert scaled_learning_rate(1e-3, 32, 4096, rule=None) == 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rule": "log"}, r"`rule`.*Received: rule='log'"),
        ({"batch_size": 0}, r"`batch_size`.*Received: batch_size=0"),
        ({"base_learning_rate": 0.0}, r"`base_learning_rate`.*Received: base_learning_rate=0\.0"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    arguments = {"base_learning_rate": 1e-3, "base_batch_size": 32, "batch_size": 64}
    with pytest.raises(ValueError, match=message):
        scaled_learning_rate(**{**arguments, **kwargs})
