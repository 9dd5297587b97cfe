"""keras-fastrain's `"auto"` choices, each made with its reason.

Every option a user leaves at `"auto"` is decided here, from the backend and
the devices in use, and comes back as a `Choice` that says what was picked
and why, so the choice can be shown once and read back. The reasons speak of the
user's run; the measurements behind them are in the project's benchmarks.
"""

import dataclasses

import keras

from keras_fastrain.validation import AUTO, check_choice, check_int

__all__ = ["Choice", "choose_jit_compile", "choose_mixed_precision", "choose_steps_per_execution"]

# The most steps one compiled call runs when steps_per_execution is "auto".
AUTO_STEPS_PER_EXECUTION = 32
PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class Choice:
    """One decided option.

    Attributes:
        option: String. The option's name, e.g. `"jit_compile"`.
        value: The value decided.
        reason: String. Why, in one sentence.
        changes_results: Bool. Whether the choice changes the numbers a
            model computes (not only how fast), so that it must be stated.
    """

    option: str
    value: object
    reason: str
    changes_results: bool = False

    def __str__(self):
        note = " (changes numerics)" if self.changes_results else ""
        return f"{self.option}={self.value!r}{note}: {self.reason}"


def choose_jit_compile(
    requested=AUTO, backend=None, xla_incompatible=(), distributed=False, devices=None
):
    """Decides `jit_compile` at `compile`.

    On TensorFlow, `"auto"` starts from Keras's own setting (XLA with a GPU
    or TPU, none on a CPU): whether XLA pays depends on the model (on a CPU
    it speeds a dense network up several times and slows a conv net down),
    so FastModel measures it at the first fit long enough to pay for the
    measurement (see `keras_fastrain.compile_search`).

    Args:
        requested: `"auto"` or a bool. Defaults to `"auto"`.
        backend: String or `None`. Defaults to the running Keras backend.
        xla_incompatible: Sequence of strings. Names of layers in the model
            that XLA cannot compile on this backend (e.g. `ImageAugmentation`
            on TensorFlow, whose image transform op has no XLA kernel).
            Defaults to `()`.
        distributed: Bool. Whether a step runs on several replicas.
            Defaults to `False`.
        devices: List of device names (`"cpu:0"`, `"gpu:0"`, ...) or `None`.
            Defaults to the devices Keras sees.
    """
    backend = backend or keras.backend.backend()
    if isinstance(requested, bool):
        return Choice("jit_compile", requested, "given")
    check_choice("jit_compile", requested, (AUTO, True, False))
    if backend == "tensorflow":
        if xla_incompatible:
            return Choice(
                "jit_compile",
                False,
                f"XLA cannot compile {', '.join(xla_incompatible)} on TensorFlow",
            )
        if distributed:
            return Choice(
                "jit_compile", False, "Keras's TensorFlow trainer runs tf.distribute without XLA"
            )
        if _accelerated(devices):
            return Choice("jit_compile", True, "Keras's own setting with a GPU or TPU")
        return Choice(
            "jit_compile",
            False,
            "Keras's own setting on a CPU, until a fit measures whether XLA pays on this model",
        )
    if backend == "jax":
        return Choice(
            "jit_compile", True, "without it JAX runs the step op by op, many times slower"
        )
    return Choice(
        "jit_compile", False, f"not measured to help on {backend}; Keras's default is kept"
    )


def _accelerated(devices):
    if devices is None:
        from keras_fastrain.devices import list_devices

        devices = list_devices()
    return bool({name.split(":")[0].lower() for name in devices} & {"gpu", "tpu"})


# Keras 3.15's TensorFlow trainer loops over steps with a tf.cond that fails
# in a tf.distribute replica context ("You must feed a value for placeholder
# tensor"), also for plain Keras under MirroredStrategy (keras#19246).
_TF_DISTRIBUTED_STEPS = "Keras's TensorFlow trainer fails with several steps per call under "
_TF_DISTRIBUTED_STEPS += "tf.distribute (keras#19246)"


def choose_steps_per_execution(requested=AUTO, backend=None, distributed=False):
    """Decides `steps_per_execution`.

    Args:
        requested: `"auto"` or an integer >= 1. Defaults to `"auto"`.
        backend: String or `None`. Defaults to the running Keras backend.
        distributed: Bool. Whether a step runs on several replicas.
            Defaults to `False`.

    Raises:
        ValueError: for a value above 1 on torch, where Keras requires 1, or
            under a TensorFlow strategy with several replicas, where Keras
            fails with it.
    """
    backend = backend or keras.backend.backend()
    tf_distributed = backend == "tensorflow" and distributed
    if requested != AUTO:
        steps = check_int("steps_per_execution", requested, minimum=1)
        if steps > 1 and (backend == "torch" or tf_distributed):
            why = "Keras's torch backend needs 1" if backend == "torch" else _TF_DISTRIBUTED_STEPS
            raise ValueError(
                "Invalid value for argument `steps_per_execution`. "
                f"Received: steps_per_execution={steps}. Expected 1: {why}."
            )
        return Choice("steps_per_execution", steps, "given")
    if backend == "torch":
        return Choice("steps_per_execution", 1, "Keras's torch backend runs one step per call")
    if tf_distributed:
        return Choice("steps_per_execution", 1, _TF_DISTRIBUTED_STEPS)
    return Choice(
        "steps_per_execution",
        AUTO_STEPS_PER_EXECUTION,
        f"{AUTO_STEPS_PER_EXECUTION} steps per compiled call cut the overhead each "
        "call adds to a step; batch callbacks then run once per call",
    )


def choose_mixed_precision(requested=AUTO, devices=None, current="float32"):
    """Decides the dtype policy.

    Args:
        requested: `"auto"`, a bool, or one of `"float32"`, `"mixed_float16"`,
            `"mixed_bfloat16"`. Defaults to `"auto"`.
        devices: List of device names (`"cpu:0"`, `"gpu:0"`, ...) or `None`.
            Defaults to the devices Keras sees.
        current: String. The global dtype policy's name. A policy the user
            set (anything but `"float32"`) is kept under `"auto"`. Defaults
            to `"float32"`.
    """
    if devices is None:
        from keras_fastrain.devices import list_devices

        devices = list_devices()
    kinds = {name.split(":")[0].lower() for name in devices}
    accelerated = "mixed_bfloat16" if "tpu" in kinds else "mixed_float16"
    if requested is True:
        requested = accelerated
    elif requested is False:
        requested = "float32"
    check_choice("mixed_precision", requested, (AUTO, *PRECISION_POLICIES))
    if requested != AUTO:
        return Choice("mixed_precision", requested, "given", requested != "float32")
    if current != "float32":
        return Choice("mixed_precision", current, "the global dtype policy you set", True)
    if kinds & {"gpu", "tpu"}:
        return Choice(
            "mixed_precision",
            accelerated,
            f"{'TPU' if 'tpu' in kinds else 'GPU'} tensor cores run 16-bit matrix "
            "math several times faster; weights stay float32 (a small model bound "
            "by kernel launches gains nothing)",
            changes_results=True,
        )
    return Choice(
        "mixed_precision", "float32", "CPUs gain nothing from 16-bit math, so numerics stay"
    )
