"""Which Keras backend is selected, and a one-line error when it is not installed.

Keras picks its backend when `keras` is first imported: from the
`KERAS_BACKEND` environment variable, else from `$KERAS_HOME/keras.json`, else
TensorFlow. When the chosen framework is missing, `import keras` fails deep
inside Keras with a bare `ModuleNotFoundError`. This module reads the same
settings *before* Keras is imported, so that keras-fastrain can say which
extra to install instead.
"""

import importlib
import importlib.util
import json
import os
import sys

__all__ = [
    "backend_version",
    "BackendNotInstalledError",
    "keras_home",
    "missing_backend_error",
    "selected_backend",
]

# Keras backend name -> (module that must be importable, keras-fastrain extra).
SUPPORTED_BACKENDS = {
    "tensorflow": ("tensorflow", "tensorflow"),
    "jax": ("jax", "jax"),
    "torch": ("torch", "torch"),
}
# Backends Keras accepts that keras-fastrain does not target; they are passed
# through untouched (their errors are Keras's own).
OTHER_KERAS_BACKENDS = ("numpy", "openvino")


class BackendNotInstalledError(ImportError):
    """The selected Keras backend's framework is not installed.

    `import keras_fastrain` still succeeds without it; using any other public
    name raises this error, whose message names the extra to install. An
    unknown `KERAS_BACKEND` raises it too. It is an `ImportError`, so
    `except ImportError` also catches it.

    Example:

    ```python
    import keras_fastrain  # imports even when the selected backend is missing

    try:
        model = keras_fastrain.FastSequential([...])
    except keras_fastrain.BackendNotInstalledError as error:
        print(error)  # ... run `pip install "keras-fastrain[jax]"` ...
    ```
    """


def keras_home():
    """Returns the folder Keras uses for its config and caches.

    Mirrors Keras's own rule (`keras/src/backend/config.py`, Keras 3.15):
    `$KERAS_HOME`, else `~/.keras`, else `/tmp/.keras` when the home folder is
    not writable. Keras exposes no public accessor for it.
    """
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def selected_backend():
    """Returns the backend name Keras will use (or uses, once imported)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    if "KERAS_BACKEND" in os.environ:
        return os.environ["KERAS_BACKEND"]
    config_path = os.path.join(os.path.expanduser(keras_home()), "keras.json")
    try:
        with open(config_path) as config_file:
            return json.load(config_file).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def missing_backend_error(backend=None):
    """Returns a `BackendNotInstalledError` for `backend`, or `None` if usable.

    Args:
        backend: String or `None`. A Keras backend name. Defaults to the
            backend Keras selects (`selected_backend()`).
    """
    if backend is None:
        if "keras" in sys.modules:  # Keras imported: its backend loaded.
            return None
        backend = selected_backend()
    if backend in OTHER_KERAS_BACKENDS:
        return None
    if backend not in SUPPORTED_BACKENDS:
        allowed = tuple(SUPPORTED_BACKENDS) + OTHER_KERAS_BACKENDS
        return BackendNotInstalledError(
            f"Invalid Keras backend. Received: KERAS_BACKEND={backend!r}. "
            f"Expected one of {allowed}."
        )
    module, extra = SUPPORTED_BACKENDS[backend]
    if importlib.util.find_spec(module) is not None:
        return None
    return BackendNotInstalledError(
        f"The Keras backend {backend!r} is selected but {module} is not "
        f'installed: run `pip install "keras-fastrain[{extra}]"`, or choose '
        f"an installed backend with KERAS_BACKEND="
        f"{'|'.join(SUPPORTED_BACKENDS)}."
    )


def backend_version(backend=None):
    """The version of the library behind a Keras backend (`None` if that
    library is not installed or the backend has none).

    Args:
        backend: String or `None`. A Keras backend name; `None` for the
            selected one.

    Example:

    >>> backend_version("no-such-backend") is None
    True
    """
    backend = backend or selected_backend()
    if backend not in SUPPORTED_BACKENDS or importlib.util.find_spec(backend) is None:
        return None
    return importlib.import_module(backend).__version__
