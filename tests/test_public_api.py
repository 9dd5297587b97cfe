"""Every public name imports, and the version has a single source."""

import importlib.metadata

import pytest

import keras_fastrain
import keras_fastrain.callbacks
import keras_fastrain.horovod
import keras_fastrain.pruning

pytestmark = pytest.mark.smoke

PUBLIC_MODULES = [
    keras_fastrain,
    keras_fastrain.callbacks,
    keras_fastrain.horovod,
    keras_fastrain.horovod.callbacks,
    keras_fastrain.pruning,
]
PUBLIC_NAMES = [(module, name) for module in PUBLIC_MODULES for name in module.__all__]


@pytest.mark.parametrize(
    ("module", "name"), PUBLIC_NAMES, ids=[f"{m.__name__}.{n}" for m, n in PUBLIC_NAMES]
)
def test_every_public_name_imports(module, name):
    assert getattr(module, name) is not None


def test_star_import_gives_exactly_all():
    namespace = {}
    exec("from keras_fastrain import *", namespace)
    exported = {name for name in namespace if name != "__builtins__"}
    assert exported == set(keras_fastrain.__all__)


def test_installed_metadata_version_is_the_package_version():
    assert importlib.metadata.version("keras-fastrain") == keras_fastrain.__version__


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError):
        keras_fastrain.NoSuchThing  # noqa: B018
