"""Real datasets load offline, and a missing one gives an actionable error."""

import numpy as np
import pytest

import keras_fastrain
from keras_fastrain.datasets import FASHION_MNIST_FILES, fashion_mnist_cache_dir
from tests.helpers import run_python


def test_digits_are_real_images_split_without_overlap(digits):
    (x_train, y_train), (x_test, _) = digits
    assert len(x_train) + len(x_test) == 1797
    assert len(x_test) == round(1797 * 0.2)
    assert x_train.shape[1:] == (8, 8) and x_train.dtype == np.float32
    assert x_train.min() >= 0.0 and x_train.max() == 1.0
    assert set(np.unique(y_train)) == set(range(10))
    train_rows = {row.tobytes() for row in x_train}
    assert sum(row.tobytes() in train_rows for row in x_test) < 5  # few duplicates


def test_digits_split_is_seeded():
    (a, _), _ = keras_fastrain.load_digits(seed=1)
    (b, _), _ = keras_fastrain.load_digits(seed=1)
    (c, _), _ = keras_fastrain.load_digits(seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"test_fraction": 1.0}, ValueError, r"`test_fraction`.*Received: test_fraction=1\.0"),
        ({"test_fraction": "half"}, TypeError, r"`test_fraction`"),
        ({"seed": -1}, ValueError, r"`seed`.*Received: seed=-1"),
    ],
)
def test_digits_arguments_are_checked(kwargs, error, message):
    with pytest.raises(error, match=message):
        keras_fastrain.load_digits(**kwargs)


def test_fashion_mnist_loads_the_real_dataset():
    (x_train, y_train), (x_test, _) = keras_fastrain.load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * 10


def test_fashion_mnist_download_argument_is_checked():
    with pytest.raises(TypeError, match=r"`download`.*Received: download='no'"):
        keras_fastrain.load_fashion_mnist(download="no")


def test_fashion_mnist_is_copied_from_a_local_copy_into_an_empty_cache(tmp_path):
    code = f"""
import keras_fastrain, os
(x, y), (xt, yt) = keras_fastrain.load_fashion_mnist(
    download=False, source_dir={fashion_mnist_cache_dir()!r})
print(x.shape, xt.shape, sorted(os.listdir({str(tmp_path / "datasets" / "fashion-mnist")!r})))
"""
    result = run_python(code, env={"KERAS_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "(60000, 28, 28) (10000, 28, 28)" in result.stdout
    assert str(sorted(FASHION_MNIST_FILES)) in result.stdout


def test_missing_fashion_mnist_says_what_to_install(tmp_path):
    empty = tmp_path / "no-local-copy"
    empty.mkdir()
    code = f"""
import keras_fastrain
try:
    keras_fastrain.load_fashion_mnist(download=False, source_dir={str(empty)!r})
except keras_fastrain.DatasetNotFoundError as error:
    print(error)
"""
    result = run_python(code, env={"KERAS_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path / "home" / "datasets" / "fashion-mnist") in message


def test_offline_demo_without_dataset_fails_in_one_line(tmp_path):
    # A proxy on a closed loopback port: any download fails at once, as offline.
    empty = tmp_path / "no-local-copy"
    empty.mkdir()
    code = f"""
import sys
import keras_fastrain.datasets
keras_fastrain.datasets.DEBIAN_FASHION_MNIST_DIR = {str(empty)!r}
from keras_fastrain.cli import main
sys.exit(main(["demo", "--out-dir", {str(tmp_path / "out")!r}]))
"""
    closed_port = "http://127.0.0.1:9"
    result = run_python(
        code,
        env={
            "KERAS_HOME": str(tmp_path / "home"),
            "https_proxy": closed_port,
            "http_proxy": closed_port,
            "HTTPS_PROXY": closed_port,
            "HTTP_PROXY": closed_port,
        },
    )
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "keras-fastrain" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("keras-fastrain: error: Fashion-MNIST is not in the Keras cache")
    assert "download failed" in errors[0]
    assert "apt-get install dataset-fashion-mnist" in errors[0]
