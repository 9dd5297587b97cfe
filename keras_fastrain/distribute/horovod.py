"""Horovod as an engine, through its core TensorFlow operations only.

`horovod.tensorflow.keras` fails on Keras 3 (`'Variable' object has no
attribute 'ref'`, and Keras 3's train step never calls the hook its
optimizer relies on; horovod#4290). The core operations work on Keras 3
values (checked with Horovod 0.28.1 on TensorFlow 2.21): `hvd.allreduce`,
`hvd.allgather`, `hvd.broadcast`. Launch with `horovodrun -np N -H host:N --gloo python script.py`.

Gradients are averaged by `Distributed<Optimizer>` classes
(`distributed_optimizer_class`): a subclass of the user's optimizer class
whose `apply` all-reduces the gradients first.
"""

import sys

import keras
import numpy as np

from keras_fastrain.distribute.engine import Engine
from keras_fastrain.validation import check_choice

__all__ = ["AveragingOptimizer", "distributed_optimizer_class", "HorovodEngine"]

COMPRESSIONS = ("none", "fp16")


def _horovod():
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise ImportError(
            "The horovod engine needs Horovod, built against the installed TensorFlow: "
            '`pip install "keras-fastrain[horovod]"`. Horovod 0.28.1 does not build from '
            "PyPI against TensorFlow 2.18 or newer; there, build it from its sdist with "
            "the include-path fix of horovod PR #4302 (keras-fastrain's README, "
            '"Installing Horovod", shows how).'
        ) from error
    return hvd


def _running_horovod():
    """Horovod's TensorFlow module if this process joined a Horovod job,
    else `None`; never imports Horovod (a process that did not import it
    joined no job)."""
    hvd = sys.modules.get("horovod.tensorflow")
    return hvd if hvd is not None and hvd.is_initialized() else None


class HorovodEngine(Engine):
    """One worker process of a `horovodrun` job.

    Each worker trains its own copy of the model on its own share of the
    data (`fit` takes this worker's batch, so `feeds_global_batch()` is
    False); `DistributedOptimizer` averages the gradients over the workers
    before each update, and `BroadcastGlobalVariablesCallback` starts them
    from the same weights.

    Args:
        reason: String. Why this engine was chosen.
    """

    name = "horovod"
    averages_gradients = False
    weights_can_diverge = True
    xla_incompatible = ("HorovodAllreduce",)  # no XLA kernel without HOROVOD_ENABLE_XLA_OPS

    def __init__(self, reason="given"):
        super().__init__(reason)
        self.hvd = _horovod()
        self.hvd.init()

    @property
    def num_replicas(self):
        return self.size

    @property
    def in_step_replicas(self):
        return False

    @property
    def rank(self):
        return self.hvd.rank()

    @property
    def size(self):
        return self.hvd.size()

    @property
    def local_rank(self):
        return self.hvd.local_rank()

    @property
    def local_size(self):
        return self.hvd.local_size()

    def feeds_global_batch(self):
        return False

    def prepare_optimizer(self, optimizer):
        """The optimizer (or the one a name gives) as its
        `Distributed<Optimizer>` class, unless it already averages."""
        optimizer = keras.optimizers.get(optimizer)
        if isinstance(optimizer, AveragingOptimizer):
            return optimizer
        if optimizer.built:
            raise ValueError(
                f"The optimizer {optimizer.name!r} already holds state, and the horovod "
                "engine must rebuild it to average its gradients. Pass a new optimizer "
                "(or its name) to compile()."
            )
        return self.averaging_optimizer(type(optimizer), optimizer.get_config(), "none")

    def describe(self):
        return f"Horovod, worker {self.rank} of {self.size}"

    def _allgather(self, array):
        import tensorflow as tf

        gathered = self.hvd.allgather(tf.convert_to_tensor(array[None]))
        return gathered.numpy()

    def _allreduce(self, array, op):
        import tensorflow as tf

        hvd_op = {"mean": self.hvd.Average, "sum": self.hvd.Sum, "max": self.hvd.Max}[op]
        value = tf.convert_to_tensor(array if op != "mean" else array.astype(np.float64))
        return self.hvd.allreduce(value, op=hvd_op).numpy()

    def _broadcast(self, array, root_rank):
        import tensorflow as tf

        return self.hvd.broadcast(tf.convert_to_tensor(array), root_rank=root_rank).numpy()

    def averaging_optimizer(self, optimizer_class, config, compression):
        """A `Distributed<optimizer_class>` made from `config` that
        all-reduces (mean) the gradients through Horovod before applying
        them (see `distributed_optimizer_class`)."""
        cls = distributed_optimizer_class(optimizer_class)
        return cls.from_config({**config, "compression": compression})


# Every `Distributed<Optimizer>` class is saved under this one registered
# name; loading dispatches on the wrapped class the config names.
_REGISTERED_PACKAGE, _REGISTERED_NAME = "keras_fastrain", "DistributedOptimizer"
_classes = {}  # the user's optimizer class -> its Distributed class


@keras.saving.register_keras_serializable(package=_REGISTERED_PACKAGE, name=_REGISTERED_NAME)
class AveragingOptimizer:
    """The base of every `Distributed<Optimizer>` class: averages gradients
    over Horovod's workers before the optimizer applies them.

    Not used alone: `distributed_optimizer_class(keras.optimizers.Adam)` is
    `DistributedAdam(AveragingOptimizer, keras.optimizers.Adam)`, an `Adam`
    in every respect (`isinstance(optimizer, keras.optimizers.Adam)`) but
    `apply`. In a Horovod job of several workers, `apply` first all-reduces
    (mean) every gradient; elsewhere (one process, e.g. a checkpoint loaded
    to train on) it applies the gradients as they are.

    Args:
        compression: `"none"` or `"fp16"` (gradients travel as float16 and
            are cast back). Defaults to `"none"`.
        **kwargs: The wrapped optimizer class's arguments.
    """

    averages_over_workers = True
    optimizer_class = None  # the wrapped class, set on each Distributed class

    def __init__(self, *args, compression="none", **kwargs):
        check_choice("compression", compression, COMPRESSIONS)
        super().__init__(*args, **kwargs)
        self.compression = compression

    def apply(self, grads, trainable_variables=None):
        hvd = _running_horovod()
        if hvd is not None and hvd.size() > 1:
            grads = [_average(hvd, grad, self.compression) for grad in grads]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        wrapped = type(self).optimizer_class
        return {
            **super().get_config(),
            "compression": self.compression,
            "optimizer_class": {
                "module": wrapped.__module__,
                "class_name": wrapped.__name__,
                "registered_name": keras.saving.get_registered_name(wrapped),
            },
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        wrapped = _wrapped_class(config.pop("optimizer_class", None), cls, custom_objects)
        distributed = distributed_optimizer_class(wrapped)
        return super(AveragingOptimizer, distributed).from_config(config, custom_objects)


def distributed_optimizer_class(optimizer_class):
    """The `Distributed<Name>` subclass of `optimizer_class` that averages
    gradients over Horovod's workers; one class per optimizer class.

    Horovod's own wrapper makes a subclass of the same name as the user's
    class (so that a saved model loads without Horovod). Here the class says
    what it is: `DistributedAdam` for `keras.optimizers.Adam`, a subclass of
    it and of `AveragingOptimizer`. A model compiled with it is saved with
    that class name, under the registered name
    `"keras_fastrain>DistributedOptimizer"`, and its config adds
    `compression` and the wrapped class; it loads back, as the same
    `Distributed` class, wherever keras_fastrain is imported. To load it
    without keras_fastrain, pass `compile=False` to `keras.saving.load_model`.

    Args:
        optimizer_class: A subclass of `keras.optimizers.Optimizer` (a
            `Distributed` class gives itself back).

    Returns:
        The `Distributed<Name>` class.

    Example:

    ```python
    DistributedAdam = distributed_optimizer_class(keras.optimizers.Adam)
    optimizer = DistributedAdam(learning_rate=0.001)
    assert isinstance(optimizer, keras.optimizers.Adam)
    ```
    """
    optimizer_base = keras.optimizers.Optimizer
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, optimizer_base)):
        raise TypeError(
            "Invalid value for argument `optimizer_class`. Received: "
            f"optimizer_class={optimizer_class!r}. Expected a subclass of "
            "keras.optimizers.Optimizer."
        )
    if issubclass(optimizer_class, AveragingOptimizer):
        return optimizer_class
    cls = _classes.get(optimizer_class)
    if cls is None:
        name = f"Distributed{optimizer_class.__name__}"
        cls = type(
            name,
            (AveragingOptimizer, optimizer_class),
            {
                "__module__": __name__,
                "__qualname__": name,
                "__doc__": f"`{optimizer_class.__name__}` that averages gradients over "
                "Horovod's workers (see `AveragingOptimizer`).",
                "optimizer_class": optimizer_class,
            },
        )
        # Saved under the one registered name (Keras looks the class up by it);
        # every Distributed class loads any of them, by its `optimizer_class`.
        keras.saving.register_keras_serializable(_REGISTERED_PACKAGE, _REGISTERED_NAME)(cls)
        _classes[optimizer_class] = cls
    return cls


def _wrapped_class(reference, cls, custom_objects):
    """The optimizer class a `Distributed` config names (by its registered
    name, else as a class of `keras.optimizers`)."""
    if reference is None:  # the config of a class made here, without the key
        if cls.optimizer_class is None:
            raise ValueError("A DistributedOptimizer config needs its `optimizer_class`.")
        return cls.optimizer_class
    found = keras.saving.get_registered_object(
        reference.get("registered_name"), custom_objects=custom_objects
    )
    if found is None and reference.get("module", "").split(".")[0] == "keras":
        found = getattr(keras.optimizers, reference.get("class_name", ""), None)
    if not (isinstance(found, type) and issubclass(found, keras.optimizers.Optimizer)):
        raise TypeError(
            f"Could not locate the optimizer class {reference.get('class_name')!r} that a "
            "saved DistributedOptimizer wraps. Register it with "
            "`@keras.saving.register_keras_serializable()`, or pass it in `custom_objects`."
        )
    return found


def _average(hvd, grad, compression):
    """`grad`'s mean over Horovod's workers (`None` stays)."""
    if grad is None:
        return None
    import tensorflow as tf

    sent = tf.cast(grad, tf.float16) if compression == "fp16" else grad
    received = hvd.allreduce(sent, op=hvd.Average)
    return tf.cast(received, grad.dtype)
