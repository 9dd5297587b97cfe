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


def _api_reference():
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "api_reference", root / "scripts" / "api_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return root, module


def test_every_public_module_has_all_and_every_name_imports():
    _, reference = _api_reference()
    modules = reference.public_modules()
    assert len(modules) > 50
    for module in modules:
        assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name} does not import"


@pytest.mark.skipif(
    keras_fastrain.missing_backend_error() is not None, reason="needs the selected backend"
)
def test_the_api_reference_in_the_docs_is_current():
    root, reference = _api_reference()
    written = (root / "docs" / "api.md").read_text()
    assert written == reference.reference(), (
        "docs/api.md is out of date: run python scripts/api_reference.py --write docs/api.md"
    )
