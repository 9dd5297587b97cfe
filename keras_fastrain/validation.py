"""Argument checks shared by every public entry point.

Each check raises with a message that names the argument, the value received
and what is allowed, in Keras's wording: "Invalid value for argument `x`.
Received: x=... Expected ...".
"""

import datetime
import math
import numbers

import numpy as np

__all__ = [
    "AUTO",
    "check_arrays",
    "check_bool",
    "check_choice",
    "check_duration",
    "check_flag",
    "check_float",
    "check_int",
    "check_optional_finite",
]

# The value of every option keras-fastrain decides by itself.
AUTO = "auto"


def _invalid(name, value, expected, error=ValueError):
    return error(
        f"Invalid value for argument `{name}`. Received: {name}={value!r}. Expected {expected}."
    )


def check_bool(name, value):
    """Returns `value` if it is a bool, else raises `TypeError`."""
    if not isinstance(value, bool):
        raise _invalid(name, value, "a bool", TypeError)
    return value


def check_flag(name, value):
    """Returns `value` as a bool if it is a bool or an integer 0 / 1 (what
    Keras's flags, such as `restore_best_weights`, accept), else raises
    `TypeError`."""
    if isinstance(value, (bool, np.bool_)) or (
        isinstance(value, (int, np.integer)) and value in (0, 1)
    ):
        return bool(value)
    raise _invalid(name, value, "a bool (or 0 / 1)", TypeError)


def check_optional_finite(name, value):
    """Returns `None`, or `value` as a float if it is a finite real number."""
    if value is None:
        return None
    value = check_float(name, value)
    if math.isinf(value):
        raise _invalid(name, value, "a finite number or None")
    return value


def check_int(name, value, minimum=None, maximum=None):
    """Returns `value` if it is an integer within [minimum, maximum]."""
    expected = "an integer" + _range_text(minimum, maximum, closed=(True, True))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _invalid(name, value, expected, TypeError)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _invalid(name, value, expected)
    return int(value)


def check_float(name, value, low=None, high=None, closed=(True, True)):
    """Returns `value` as a float if it is a real number within the bounds.

    Args:
        name: String. The argument's name, for the message.
        value: The value received.
        low: Number or `None`. The lower bound.
        high: Number or `None`. The upper bound.
        closed: Pair of bools. Whether each bound is allowed itself.
    """
    expected = "a number" + _range_text(low, high, closed)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _invalid(name, value, expected, TypeError)
    value = float(value)
    too_low = low is not None and (value < low if closed[0] else value <= low)
    too_high = high is not None and (value > high if closed[1] else value >= high)
    if too_low or too_high or value != value:  # value != value: NaN
        raise _invalid(name, value, expected)
    return value


def check_choice(name, value, allowed):
    """Returns `value` if it is one of `allowed`."""
    if value not in allowed:
        raise _invalid(name, value, f"one of {tuple(allowed)}")
    return value


def _range_text(low, high, closed):
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>=' if closed[0] else '>'} {low}"
    if low is None:
        return f" {'<=' if closed[1] else '<'} {high}"
    left = "[" if closed[0] else "("
    right = "]" if closed[1] else ")"
    return f" in {left}{low}, {high}{right}"


def check_duration(name, value):
    """Returns a time budget in seconds (a float > 0, inf allowed) from a
    number of seconds or a `datetime.timedelta`."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    return check_float(name, value, low=0, closed=(False, True))


def check_arrays(name, value):
    """Returns the number of samples in `value`: an array, or a list/dict of
    arrays (anything with a `shape` of at least one dimension), which the
    measuring tools (the batch-size and learning-rate finders) train on."""
    # Imported here: the command line checks its arguments with this module
    # before it knows whether the selected Keras backend is installed.
    import keras

    arrays = keras.tree.flatten(value) if value is not None else []
    if not arrays or not all(hasattr(a, "shape") and len(a.shape) >= 1 for a in arrays):
        raise TypeError(
            f"Invalid value for argument `{name}`. Expected arrays (or a list/dict of "
            f"arrays). Received: {name} of type {type(value).__name__}."
        )
    return len(arrays[0])
