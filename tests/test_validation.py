"""Argument checks name the argument, the value and what is allowed."""

import pytest

from keras_fastrain.validation import check_bool, check_choice, check_float, check_int

pytestmark = pytest.mark.smoke


def test_check_int_accepts_integers_in_range():
    assert check_int("epochs", 3, minimum=1) == 3


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, r"Received: epochs=0\. Expected an integer >= 1\."),
        (2.5, TypeError, r"Received: epochs=2\.5\. Expected an integer >= 1\."),
        (True, TypeError, r"Received: epochs=True\."),
        ("3", TypeError, r"Received: epochs='3'\."),
    ],
)
def test_check_int_rejects(value, error, message):
    with pytest.raises(error, match=r"Invalid value for argument `epochs`\. " + message):
        check_int("epochs", value, minimum=1)


def test_check_int_upper_bound():
    with pytest.raises(ValueError, match=r"Expected an integer in \[1, 4\]"):
        check_int("n", 5, minimum=1, maximum=4)


@pytest.mark.parametrize("value", [0.0, 1.5, float("nan"), -1])
def test_check_float_rejects_outside_open_closed_interval(value):
    with pytest.raises(ValueError, match=r"`target`.*Expected a number in \(0, 1\]"):
        check_float("target", value, 0, 1, closed=(False, True))


def test_check_float_accepts_bound_that_is_closed():
    assert check_float("target", 1, 0, 1, closed=(False, True)) == 1.0


def test_check_float_rejects_non_numbers():
    with pytest.raises(TypeError, match=r"Received: rate='fast'"):
        check_float("rate", "fast", low=0)


def test_check_bool_and_choice():
    assert check_bool("download", False) is False
    with pytest.raises(TypeError, match=r"Received: download=1\. Expected a bool\."):
        check_bool("download", 1)
    with pytest.raises(ValueError, match=r"Expected one of \('linear', 'sqrt', None\)"):
        check_choice("rule", "cubic", ("linear", "sqrt", None))
