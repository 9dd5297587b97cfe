"""Shared fixtures: real data (scikit-learn digits)."""

import pytest

import keras_fastrain


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits, split 80/20: `(x_train, y_train), (x_test, y_test)`."""
    return keras_fastrain.load_digits()
