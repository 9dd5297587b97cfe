"""A missing or misspelt Keras backend gives a one-line, actionable error."""

import sys

import keras
import pytest

from keras_fastrain.backend import (
    BackendNotInstalledError,
    missing_backend_error,
    selected_backend,
)
from tests.helpers import run_python

pytestmark = pytest.mark.smoke


def test_selected_backend_is_the_one_keras_runs():
    assert selected_backend() == keras.backend.backend()


def test_running_backend_is_not_reported_missing():
    assert missing_backend_error() is None
    assert missing_backend_error(keras.backend.backend()) is None


def test_uninstalled_backend_names_the_extra_to_install(monkeypatch):
    # A None entry in sys.modules makes the module unimportable (PEP 451).
    monkeypatch.setitem(sys.modules, "jax", None)
    error = missing_backend_error("jax")
    assert isinstance(error, BackendNotInstalledError)
    assert 'pip install "keras-fastrain[jax]"' in str(error)
    assert "\n" not in str(error)


def test_misspelt_backend_lists_the_allowed_names():
    error = missing_backend_error("tensorflw")
    assert isinstance(error, BackendNotInstalledError)
    assert "KERAS_BACKEND='tensorflw'" in str(error)
    assert "'tensorflow', 'jax', 'torch'" in str(error)


HIDE_JAX_AND_RUN = """
import sys
sys.modules["jax"] = None  # as if jax were not installed
{body}
"""


def test_command_line_prints_one_line_when_backend_is_missing():
    body = "from keras_fastrain.cli import main; sys.exit(main(['demo']))"
    result = run_python(HIDE_JAX_AND_RUN.format(body=body), env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("keras-fastrain: error: The Keras backend 'jax'")
    assert 'pip install "keras-fastrain[jax]"' in lines[0]


def test_public_names_raise_the_backend_error_when_backend_is_missing():
    body = """
import keras_fastrain
try:
    keras_fastrain.load_digits
except keras_fastrain.BackendNotInstalledError as error:
    print("raised:", error)
"""
    result = run_python(HIDE_JAX_AND_RUN.format(body=body), env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr
    assert "raised: The Keras backend 'jax' is selected" in result.stdout
