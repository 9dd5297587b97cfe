"""Real datasets that load offline: Fashion-MNIST and scikit-learn's digits.

`keras.datasets.fashion_mnist.load_data()` downloads its four files into the
Keras cache the first time. On a machine with no route to that server, the
same files come from Debian's `dataset-fashion-mnist` package: this module
copies them into the cache where Keras looks, then lets Keras load them. It
never falls back to made-up data.
"""

import os
import shutil

import keras
import numpy as np

from keras_fastrain.backend import keras_home
from keras_fastrain.validation import check_bool, check_float, check_int

__all__ = [
    "DatasetNotFoundError",
    "fashion_mnist_cache_dir",
    "load_digits",
    "load_fashion_mnist",
    "prepare_fashion_mnist",
]

FASHION_MNIST_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
FASHION_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is neither cached nor obtainable; the message says how to get it.

    Raised by `load_fashion_mnist`. It is a `FileNotFoundError`.

    Example:

    ```python
    try:
        (x_train, y_train), _ = keras_fastrain.load_fashion_mnist(download=False)
    except keras_fastrain.DatasetNotFoundError as error:
        print(error)  # ... `apt-get install dataset-fashion-mnist` ...
    ```
    """


def fashion_mnist_cache_dir():
    """Returns the folder where `keras.datasets.fashion_mnist` looks for its files.

    Follows `keras.utils.get_file`'s rule (Keras 3.15): the Keras home folder,
    or `/tmp/.keras` when that folder is not writable.
    """
    base = os.path.expanduser(keras_home())
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return os.path.join(base, "datasets", "fashion-mnist")


def _missing_files(folder):
    return [name for name in FASHION_MNIST_FILES if not os.path.isfile(os.path.join(folder, name))]


def prepare_fashion_mnist(source_dir=None):
    """Copies Fashion-MNIST from `source_dir` into the Keras cache if missing there.

    Args:
        source_dir: String or `None`. A folder holding the four `.gz` files.
            Defaults to where Debian's `dataset-fashion-mnist` package
            installs them, `"/usr/share/datasets/fashion-mnist"`.

    Returns:
        The list of files still missing from the cache (empty when ready).
    """
    source_dir = DEBIAN_FASHION_MNIST_DIR if source_dir is None else source_dir
    cache_dir = fashion_mnist_cache_dir()
    missing = _missing_files(cache_dir)
    available = [name for name in missing if os.path.isfile(os.path.join(source_dir, name))]
    if available:
        os.makedirs(cache_dir, exist_ok=True)
        for name in available:
            shutil.copyfile(os.path.join(source_dir, name), os.path.join(cache_dir, name))
    return _missing_files(cache_dir)


def _not_found_message(cache_dir, reason):
    return (
        f"Fashion-MNIST is not in the Keras cache ({cache_dir}) and {reason}: "
        "install Debian's copy with `apt-get install dataset-fashion-mnist` "
        f"(keras-fastrain copies it from {DEBIAN_FASHION_MNIST_DIR}), or "
        f"download {', '.join(FASHION_MNIST_FILES)} from {FASHION_MNIST_URL} "
        "into that folder."
    )


def load_fashion_mnist(download=True, source_dir=None):
    """Loads Fashion-MNIST, offline when a local copy exists.

    Returns what `keras.datasets.fashion_mnist.load_data()` returns, after
    making sure the files are in the Keras cache (copied from `source_dir`
    when there).

    Args:
        download: Boolean. Whether Keras may download the files when no local
            copy exists. Defaults to `True`.
        source_dir: String or `None`. A folder with a local copy of the four
            `.gz` files. Defaults to Debian's
            `"/usr/share/datasets/fashion-mnist"`.

    Returns:
        Tuple of NumPy arrays `(x_train, y_train), (x_test, y_test)`: `uint8`
        images of shape `(60000, 28, 28)` and `(10000, 28, 28)`, `uint8`
        labels in 0-9.

    Raises:
        DatasetNotFoundError: when the files are neither cached, nor in
            `source_dir`, nor downloadable; the message says what to install.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = keras_fastrain.load_fashion_mnist()
    ```
    """
    check_bool("download", download)
    if prepare_fashion_mnist(source_dir) and not download:
        raise DatasetNotFoundError(_not_found_message(fashion_mnist_cache_dir(), "download=False"))
    try:
        return keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # Keras raises a bare Exception on URL errors.
        reason = f"the download failed ({type(error).__name__}: {error})"
        raise DatasetNotFoundError(_not_found_message(fashion_mnist_cache_dir(), reason)) from error


def load_digits(test_fraction=0.2, seed=0):
    """Loads scikit-learn's 8x8 handwritten digits, split into train and test.

    A small real dataset (1797 images) bundled with scikit-learn, so it needs
    no download: fit for quick tests of training code.

    Args:
        test_fraction: Float in (0, 1). The share of images kept for testing.
            Defaults to `0.2`.
        seed: Integer. Seed of the shuffle before the split. Defaults to `0`.

    Returns:
        Tuple `(x_train, y_train), (x_test, y_test)`: `float32` images of
        shape `(n, 8, 8)` scaled to [0, 1], `int64` labels in 0-9.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = keras_fastrain.load_digits()
    ```
    """
    test_fraction = check_float("test_fraction", test_fraction, 0, 1, (False, False))
    seed = check_int("seed", seed, minimum=0)
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as error:
        raise ImportError(
            "load_digits needs scikit-learn: run `pip install scikit-learn`."
        ) from error
    digits = sklearn_load_digits()
    images = (digits.images / 16.0).astype("float32")
    labels = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(len(labels) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (images[train], labels[train]), (images[test], labels[test])
