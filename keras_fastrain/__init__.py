"""keras-fastrain: make Keras 3 training reach its accuracy sooner.

Public names are listed in `__all__`. When the selected Keras backend is not
installed, `import keras_fastrain` still succeeds (so the command line can print
a one-line fix), and using any public name raises `BackendNotInstalledError`
saying which extra to install.
"""

from keras_fastrain._version import __version__
from keras_fastrain.backend import BackendNotInstalledError, missing_backend_error

__all__ = [
    "__version__",
    "callbacks",
    "distribute",
    "DistributedOptimizer",
    "FastModel",
    "FastSequential",
    "ImageAugmentation",
    "losses",
    "pruning",
    "BackendNotInstalledError",
    "DatasetNotFoundError",
    "load_digits",
    "load_fashion_mnist",
]

_backend_error = missing_backend_error()

if _backend_error is None:
    from keras_fastrain import callbacks, distribute, losses, pruning
    from keras_fastrain.augmentation import ImageAugmentation
    from keras_fastrain.datasets import (
        DatasetNotFoundError,
        load_digits,
        load_fashion_mnist,
    )
    from keras_fastrain.distribute import DistributedOptimizer
    from keras_fastrain.model import FastModel, FastSequential
else:

    def __getattr__(name):
        if name in __all__:
            raise _backend_error
        raise AttributeError(f"module 'keras_fastrain' has no attribute {name!r}")
