"""Which engine trains: `distribute=` resolved, and the process's engine.

`resolve_engine(distribute)` turns FastModel's `distribute=` option into an
`Engine`. `"auto"` first looks for a multi-worker launch in the environment
(`horovodrun`'s variables, a TF_CONFIG with several tasks, JAX's or Keras's
multi-process variables) and starts that engine once for the process
(`init()`); else it keeps a strategy or distribution the user already
entered, else uses every local device of the fastest kind when there are
several (GPUs, or CPU devices the user split on purpose), else one device.
`current()` is the process's engine, which callbacks ask for rank, size and
collectives. The engines themselves live one per module, imported only when
chosen.
"""

import os

import keras

from keras_fastrain.distribute.engine import Engine
from keras_fastrain.validation import check_choice

__all__ = ["check_distribute", "current", "init", "launch_from_environment", "resolve_engine"]

# Engines that run in one process over its local devices, and engines whose
# workers are separate processes (each started by a launcher).
SINGLE_PROCESS_ENGINES = ("mirrored", "data_parallel")
MULTI_WORKER_ENGINES = ("multi_worker", "horovod", "jax_multi_process")
ENGINE_NAMES = ("auto", "none", *SINGLE_PROCESS_ENGINES, *MULTI_WORKER_ENGINES)
# The Keras backend each named engine runs on.
BACKEND_OF = {
    "mirrored": "tensorflow",
    "data_parallel": "jax",
    "multi_worker": "tensorflow",
    "horovod": "tensorflow",
    "jax_multi_process": "jax",
}

_LAUNCHERS = {
    "horovod": "horovodrun's variables",
    "multi_worker": "a TF_CONFIG with several tasks",
    "jax_multi_process": "JAX multi-process variables",
}

# The multi-worker engine this process joined, once `init()` started it.
_process_engine = None


def launch_from_environment(environ=None):
    """The multi-worker engine the environment launches, or `None`.

    Recognises `horovodrun` (HOROVOD_SIZE above 1), TF_CONFIG listing
    several tasks, and a JAX multi-process launch
    (KERAS_DISTRIBUTION_NUM_PROCESSES or JAX_NUM_PROCESSES above 1).

    Args:
        environ: Mapping of environment variable names to values, or `None`
            for `os.environ`. Defaults to `None`.

    Returns:
        `"horovod"`, `"multi_worker"`, `"jax_multi_process"`, or `None`
        when the environment launches no multi-worker job.

    Raises:
        RuntimeError: if several launches are found at once.

    Example:

    ```python
    from keras_fastrain import distribute

    distribute.launch_from_environment({"HOROVOD_SIZE": "2"})  # "horovod"
    distribute.launch_from_environment({})  # None
    ```
    """
    from keras_fastrain.distribute.jax_multi_process import jax_process_count
    from keras_fastrain.distribute.tf_multi_worker import tf_config_tasks

    environ = os.environ if environ is None else environ
    found = []
    if int(environ.get("HOROVOD_SIZE") or 1) > 1:
        found.append("horovod")
    if tf_config_tasks(environ) > 1:
        found.append("multi_worker")
    if jax_process_count(environ) > 1:
        found.append("jax_multi_process")
    if len(found) > 1:
        raise RuntimeError(
            f"The environment launches several engines at once ({', '.join(found)}): "
            "keep the variables of one launcher only."
        )
    return found[0] if found else None


def init(distribute="auto"):
    """Joins this process to its multi-worker job; returns the engine.

    Call it at the top of a script that a launcher starts on every worker
    (`horovodrun`, TF_CONFIG workers, JAX processes), before building models
    or data: MultiWorkerMirroredStrategy must exist before TensorFlow runs
    anything else, and JAX's distributed runtime before JAX does.
    `FastModel(distribute="auto")` calls it itself. Once a multi-worker
    engine is joined, calling it again returns that engine; without a
    launch each call returns a one-process engine.

    Args:
        distribute: `"auto"` (from the environment; one process if no launch
            is found) or one of `"multi_worker"`, `"horovod"`,
            `"jax_multi_process"`. Defaults to `"auto"`.

    Returns:
        The process's `Engine` (the one-process engine when no launch is
        found).

    Raises:
        ValueError: for an unknown name, or an engine of another backend.
        RuntimeError: if the process already joined another engine, or the
            environment launches several.

    Example:

    ```python
    from keras_fastrain import distribute

    engine = distribute.init()  # first: the launch decides the engine
    print(f"worker {engine.rank} of {engine.size} on {engine.name}")
    ```
    """
    global _process_engine
    check_choice("distribute", distribute, ("auto", *MULTI_WORKER_ENGINES))
    if _process_engine is not None:
        if distribute not in ("auto", _process_engine.name):
            raise RuntimeError(
                f"This process already joined the {_process_engine.name} engine; it "
                f"cannot also join {distribute!r}."
            )
        return _process_engine
    name = launch_from_environment() if distribute == "auto" else distribute
    if name is None:
        return current()
    backend = keras.backend.backend()
    if BACKEND_OF[name] != backend:
        raise ValueError(
            f"The {name} engine needs the {BACKEND_OF[name]} backend; Keras runs on "
            f"{backend}. Set KERAS_BACKEND={BACKEND_OF[name]}."
        )
    reason = "given" if distribute == name else f"{_LAUNCHERS[name]} in the environment"
    if name == "multi_worker":
        from keras_fastrain.distribute.tf_multi_worker import MultiWorkerEngine

        _process_engine = MultiWorkerEngine(reason=reason)
    elif name == "jax_multi_process":
        from keras_fastrain.distribute.jax_multi_process import JaxMultiProcessEngine

        _process_engine = JaxMultiProcessEngine(reason=reason)
    else:
        from keras_fastrain.distribute.horovod import HorovodEngine

        _process_engine = HorovodEngine(reason=reason)
    return _process_engine


def current():
    """The engine of this process: the multi-worker engine it joined with
    `init()`, else the one-process engine (rank 0 of 1).

    Example:

    ```python
    engine = keras_fastrain.distribute.current()
    if engine.is_chief:
        model.save("model.keras")
    mean_loss = engine.allreduce(loss, "mean")
    ```
    """
    return _process_engine if _process_engine is not None else Engine("one process")


def check_distribute(distribute):
    """Checks a `distribute=` value without creating anything; returns it.

    Names are checked against `ENGINE_NAMES` only, not against the backend
    (`resolve_engine` does that); a strategy or distribution object is
    passed through, to be checked when it is resolved.

    Args:
        distribute: `None`, one of `ENGINE_NAMES`, a
            `tf.distribute.Strategy`, or a `keras.distribution`
            distribution.

    Raises:
        ValueError: for an unknown name.
        TypeError: for a number, bool, list, tuple or dict.

    Example:

    ```python
    from keras_fastrain import distribute

    distribute.check_distribute("mirrored")  # "mirrored"
    distribute.check_distribute("mirored")  # ValueError: ... Expected one of ('auto', ...
    ```
    """
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
            the local devices), a multi-worker engine's name (see `init`),
            a `tf.distribute.Strategy`, or a
            `keras.distribution.DataParallel` (or `ModelParallel`).
        backend: String or `None`. Defaults to the running Keras backend.

    Raises:
        ValueError: for an unknown name, a name for another backend, or a
            strategy given while a different one is already entered.

    Example:

    ```python
    engine = keras_fastrain.distribute.resolve_engine("auto")
    print(engine.name, engine.num_replicas, engine.reason)  # e.g. none 1 one local device (cpu:0)
    with engine.scope():
        model = build_model()
    ```
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
        if _process_engine is not None or launch_from_environment() is not None:
            return init()
        if active is not None:
            return active
        return _local_engine(backend, given=False)
    if BACKEND_OF[distribute] != backend:
        raise ValueError(
            f"Invalid value for argument `distribute`. Received: distribute={distribute!r}, "
            f"which needs the {BACKEND_OF[distribute]} backend; Keras runs on {backend}. "
            "Use distribute='auto' to train on the local devices of any backend."
        )
    if distribute in MULTI_WORKER_ENGINES:
        return init(distribute)
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
    # Keras 3.15 has no distribution backend for torch: it trains on the
    # first device torch offers, and that device is what is named here.
    from keras_fastrain.devices import list_devices

    return list_devices()[:1]
