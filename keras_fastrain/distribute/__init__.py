"""Where training runs: one device, or several in step.

`resolve_engine(distribute)` turns FastModel's `distribute=` option into an
`Engine`. `"auto"` keeps a strategy or distribution the user already entered,
else uses every local device of the fastest kind when there are several
(GPUs, or CPU devices the user split on purpose), else one device.

One place decides; the engines live one per file:
- `engine.py`: the interface and the one-device engine;
- `tf_strategy.py`: any `tf.distribute.Strategy` (MirroredStrategy locally;
  TPUStrategy when a user passes one);
- `jax_data_parallel.py`: `keras.distribution.DataParallel` on JAX.
Multi-worker launches (TF_CONFIG workers, `horovodrun`, JAX processes) are
recognised here and plug in as further engines.
"""

import json
import os

import keras

from keras_fastrain.distribute.engine import Engine
from keras_fastrain.validation import check_choice

__all__ = ["ENGINE_NAMES", "Engine", "check_distribute", "resolve_engine"]

ENGINE_NAMES = ("auto", "none", "mirrored", "data_parallel")
_BACKEND_OF = {"mirrored": "tensorflow", "data_parallel": "jax"}


def check_distribute(distribute):
    """Checks a `distribute=` value without creating anything; returns it."""
    if distribute is None or isinstance(distribute, str):
        return check_choice("distribute", distribute, (*ENGINE_NAMES, None))
    if isinstance(distribute, (int, float, bool, list, tuple, dict)):
        raise TypeError(
            f"Invalid value for argument `distribute`. Received: distribute={distribute!r}. "
            f"Expected one of {ENGINE_NAMES}, None, a tf.distribute.Strategy or a "
            "keras.distribution.DataParallel."
        )
    return distribute  # a strategy or distribution: checked when compile resolves it


def resolve_engine(distribute="auto", backend=None):
    """Returns the `Engine` for `distribute`.

    Args:
        distribute: `"auto"`, `None` or `"none"` (one device), `"mirrored"`
            (TensorFlow `MirroredStrategy` over the local devices),
            `"data_parallel"` (JAX `keras.distribution.DataParallel` over
            the local devices), a `tf.distribute.Strategy`, or a
            `keras.distribution.DataParallel` (or `ModelParallel`).
        backend: String or `None`. Defaults to the running Keras backend.

    Raises:
        ValueError: for an unknown name, a name for another backend, or a
            strategy given while a different one is already entered.
    """
    backend = backend or keras.backend.backend()
    if distribute is None or distribute == "none":
        return Engine("given")
    active = _active_engine(backend)
    if not isinstance(distribute, str):
        engine = _engine_for_object(distribute, backend)
        _check_not_contradicting(engine, active)
        return engine
    check_choice("distribute", distribute, ENGINE_NAMES)
    if distribute == "auto":
        if active is not None:
            return active
        _refuse_multi_worker_launch()
        return _local_engine(backend, given=False)
    if _BACKEND_OF[distribute] != backend:
        raise ValueError(
            f"Invalid value for argument `distribute`. Received: distribute={distribute!r}, "
            f"which needs the {_BACKEND_OF[distribute]} backend; Keras runs on {backend}. "
            "Use distribute='auto' to train on the local devices of any backend."
        )
    engine = _local_engine(backend, given=True)
    _check_not_contradicting(engine, active)
    return engine


def _engine_for_object(distribute, backend):
    # keras.distribution exports DataParallel and ModelParallel, not their base.
    if isinstance(distribute, (keras.distribution.DataParallel, keras.distribution.ModelParallel)):
        if backend != "jax":
            raise ValueError(
                "A keras.distribution distribution trains only on the JAX backend here; "
                f"Keras runs on {backend}. Use a tf.distribute.Strategy on TensorFlow."
            )
        from keras_fastrain.distribute.jax_data_parallel import JaxDataParallelEngine

        return JaxDataParallelEngine(distribute, "given")
    if backend == "tensorflow":
        import tensorflow as tf

        if isinstance(distribute, tf.distribute.Strategy):
            from keras_fastrain.distribute.tf_strategy import TFStrategyEngine

            return TFStrategyEngine(distribute, "given")
    raise TypeError(
        f"Invalid value for argument `distribute`. Received: distribute={distribute!r}. "
        f"Expected one of {ENGINE_NAMES}, None, a tf.distribute.Strategy (TensorFlow) "
        "or a keras.distribution.DataParallel / ModelParallel (JAX)."
    )


def _active_engine(backend):
    """The strategy or distribution the user entered themselves, if any."""
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            from keras_fastrain.distribute.tf_strategy import TFStrategyEngine

            return TFStrategyEngine(tf.distribute.get_strategy(), "the strategy scope entered")
    elif backend == "jax":
        distribution = keras.distribution.distribution()
        if distribution is not None:
            from keras_fastrain.distribute.jax_data_parallel import JaxDataParallelEngine

            return JaxDataParallelEngine(distribution, "the distribution set")
    return None


def _check_not_contradicting(engine, active):
    if active is None:
        return
    mine = getattr(engine, "strategy", None) or getattr(engine, "distribution", None)
    theirs = getattr(active, "strategy", None) or getattr(active, "distribution", None)
    if mine is not theirs:
        raise ValueError(
            f"`distribute` asks for {engine.describe()}, but {active.describe()} is "
            "already active (a strategy scope or keras.distribution.set_distribution). "
            "Give one of them: leave distribute='auto' to use the active one."
        )


def _local_engine(backend, given):
    """Every local device of the fastest kind, if there are several."""
    devices = _local_devices(backend)
    if len(devices) < 2 and not given:
        return Engine(f"one local device ({', '.join(devices) or 'cpu'})")
    reason = "given" if given else f"{len(devices)} local devices"
    if backend == "tensorflow":
        from keras_fastrain.distribute.tf_strategy import mirrored_engine

        return mirrored_engine(devices, reason)
    from keras_fastrain.distribute.jax_data_parallel import data_parallel_engine

    return data_parallel_engine(devices, reason)


def _local_devices(backend):
    if backend == "tensorflow":
        import tensorflow as tf

        for kind in ("GPU", "CPU"):
            found = [device.name for device in tf.config.list_logical_devices(kind)]
            if found:
                return found
        return []
    if backend == "jax":
        import jax

        return [f"{device.platform}:{device.id}" for device in jax.local_devices()]
    return []  # Keras 3.15 has no distribution backend for torch


def _refuse_multi_worker_launch():
    """Stops a multi-worker launch from training as independent copies."""
    found = []
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    if sum(len(tasks) for tasks in cluster.values()) > 1:
        found.append("TF_CONFIG with several tasks")
    if int(os.environ.get("HOROVOD_SIZE", "1")) > 1:
        found.append("horovodrun (HOROVOD_SIZE)")
    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
        found.append("KERAS_DISTRIBUTION_NUM_PROCESSES")
    if found:
        raise RuntimeError(
            f"distribute='auto' found a multi-worker launch ({'; '.join(found)}), and this "
            "version of keras-fastrain trains on one host only: each worker would train "
            "its own copy. Unset those variables, or pass distribute=None to train "
            "each process on its own on purpose."
        )
