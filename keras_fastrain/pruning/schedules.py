"""Pruning schedules with tfmot's names, arguments and arithmetic.

A schedule maps a training step to `(should_prune, sparsity)`: whether the
masks are recomputed at this step, and the fraction of weights to zero. As
tfmot's, calling a schedule returns a bool tensor and a float32 tensor, and
takes a step that may be a tensor inside a compiled step (`ConstantSparsity`
and `PolynomialDecay` compute with `keras.ops`). `should_prune(step)` and
`sparsity(step)` give the same answers as Python values, on the host.
Masks are recomputed every `frequency` steps from `begin_step` to `end_step`
(`-1`: no end, for `ConstantSparsity`). The arithmetic is tfmot's
(`tensorflow_model_optimization.sparsity.keras`), checked against it in the
tests, in float32 as tfmot computes it.

Any object with the same call, such as a tfmot schedule itself, can stand in
for these: keras-fastrain only calls it with the step and reads the pair.
"""

import numpy as np
from keras import ops

from keras_fastrain.validation import check_float, check_int

__all__ = [
    "as_schedule",
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "schedule_values",
]


def _check_sparsity(name, value):
    return check_float(name, value, low=0, high=1, closed=(True, False))


def _check_steps(begin_step, end_step, frequency, allow_no_end):
    begin_step = check_int("begin_step", begin_step, minimum=0)
    end_step = check_int("end_step", end_step, minimum=-1 if allow_no_end else 0)
    if end_step != -1 and end_step < begin_step:
        raise ValueError(
            f"Invalid value for argument `end_step`. Received: end_step={end_step}. "
            f"Expected end_step >= begin_step ({begin_step})"
            + (", or -1 for no end." if allow_no_end else ".")
        )
    frequency = check_int("frequency", frequency, minimum=1)
    return begin_step, end_step, frequency


class PruningSchedule:
    """Base class: `schedule(step)` returns `(should_prune, sparsity)` tensors.

    Subclasses set `begin_step`, `end_step` and `frequency` and implement
    `sparsity(step)` for a Python integer step; calling the schedule then
    answers for a concrete step (a number or an eager tensor). To be called
    with a symbolic step inside a compiled function, also implement
    `sparsity_tensor(step)` with `keras.ops`, as `ConstantSparsity` and
    `PolynomialDecay` do. `get_config()` and the `repr` read a `_config`
    dict of the constructor's arguments, which subclasses set too.

    Example:

    ```python
    class StepSparsity(keras_fastrain.pruning.PruningSchedule):
        # 50% sparsity from `begin_step`, 80% from `step_at` on.
        def __init__(self, begin_step, step_at, frequency=100):
            self.begin_step, self.end_step, self.frequency = begin_step, -1, frequency
            self.step_at = step_at
            self._config = {"begin_step": begin_step, "step_at": step_at, "frequency": frequency}

        def sparsity(self, step):
            return 0.5 if step < self.step_at else 0.8


    schedule = StepSparsity(begin_step=0, step_at=1000)
    schedule.sparsity(1000)  # 0.8
    schedule(1000)  # (bool tensor True, float32 tensor 0.8)
    ```
    """

    def should_prune(self, step):
        """Whether masks are recomputed at `step` (an integer)."""
        step = int(step)
        in_range = step >= self.begin_step and (self.end_step < 0 or step <= self.end_step)
        return in_range and (step - self.begin_step) % self.frequency == 0

    def sparsity(self, step):
        """The sparsity at `step` (an integer), as a Python float."""
        raise NotImplementedError

    def sparsity_tensor(self, step):
        """The sparsity at `step` (an integer tensor), as a float32 tensor.
        Defaults to `sparsity(step)` on a concrete step."""
        return ops.convert_to_tensor(np.float32(self.sparsity(int(step))))

    def should_prune_tensor(self, step):
        """`should_prune` with `keras.ops`, for an integer tensor step."""
        step = ops.cast(step, "int32")
        in_range = step >= self.begin_step
        if self.end_step >= 0:
            in_range = ops.logical_and(in_range, step <= self.end_step)
        on_beat = ops.equal(ops.mod(step - self.begin_step, self.frequency), 0)
        return ops.logical_and(in_range, on_beat)

    def runs_in_step(self):
        """Whether calling the schedule works on a symbolic step inside a
        compiled training step: `sparsity_tensor` is implemented with
        `keras.ops`, and the host rule `should_prune` is the base one (or
        `should_prune_tensor` is implemented too)."""
        cls = type(self)
        base = PruningSchedule
        own_sparsity = cls.sparsity_tensor is not base.sparsity_tensor
        same_rule = cls.should_prune is base.should_prune
        own_rule = cls.should_prune_tensor is not base.should_prune_tensor
        return own_sparsity and (same_rule or own_rule)

    def __call__(self, step):
        """tfmot's call: `(should_prune, sparsity)` as a bool tensor and a
        float32 tensor, for an integer or an integer tensor `step`."""
        step = ops.convert_to_tensor(step, "int32")
        return self.should_prune_tensor(step), self.sparsity_tensor(step)

    def get_config(self):
        return {"class_name": type(self).__name__, "config": dict(self._config)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._config.items())
        return f"{type(self).__name__}({arguments})"


class ConstantSparsity(PruningSchedule):
    """Prunes to `target_sparsity` every `frequency` steps (tfmot's
    `ConstantSparsity`).

    Args:
        target_sparsity: Float in [0, 1). The fraction of weights zeroed.
        begin_step: Integer >= 0. The first step that prunes.
        end_step: Integer >= `begin_step`, or `-1` (default) for no end.
        frequency: Integer >= 1. Steps between mask updates. Defaults to 100.

    Example:

    ```python
    schedule = ConstantSparsity(0.8, begin_step=0, frequency=50)
    schedule.should_prune(100), schedule.sparsity(100)  # (True, 0.8)
    ```
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)
        self.begin_step, self.end_step, self.frequency = _check_steps(
            begin_step, end_step, frequency, allow_no_end=True
        )
        self._config = {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }

    def sparsity(self, step):
        del step
        return float(np.float32(self.target_sparsity))

    def sparsity_tensor(self, step):
        del step
        return ops.convert_to_tensor(np.float32(self.target_sparsity))


class PolynomialDecay(PruningSchedule):
    """Raises sparsity from `initial_sparsity` to `final_sparsity` along a
    polynomial (tfmot's `PolynomialDecay`, after Zhu and Gupta 2017).

    `sparsity = final + (initial - final) * (1 - p) ** power`, with
    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`.

    Args:
        initial_sparsity: Float in [0, 1). Sparsity at `begin_step`.
        final_sparsity: Float in [0, 1). Sparsity from `end_step` on.
        begin_step: Integer >= 0.
        end_step: Integer >= `begin_step`.
        power: Float. The polynomial's exponent. Defaults to 3.
        frequency: Integer >= 1. Steps between mask updates. Defaults to 100.

    Example:

    ```python
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)
    schedule.should_prune(500), schedule.sparsity(500)  # (True, 0.7)
    ```
    """

    def __init__(
        self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100
    ):
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        self.begin_step, self.end_step, self.frequency = _check_steps(
            begin_step, end_step, frequency, allow_no_end=False
        )
        self.power = check_float("power", power)
        self._config = {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }

    def sparsity(self, step):
        f32 = np.float32
        span = self.end_step - self.begin_step
        with np.errstate(divide="ignore", invalid="ignore"):
            progress = f32(int(step) - self.begin_step) / f32(span)
        progress = np.clip(np.nan_to_num(progress, nan=1.0), f32(0), f32(1))
        initial, final = f32(self.initial_sparsity), f32(self.final_sparsity)
        value = final + (initial - final) * (f32(1) - progress) ** f32(self.power)
        return float(f32(value))

    def sparsity_tensor(self, step):
        span = self.end_step - self.begin_step
        if span == 0:
            progress = ops.convert_to_tensor(np.float32(1))
        else:
            elapsed = ops.cast(ops.cast(step, "int32") - self.begin_step, "float32")
            progress = ops.clip(elapsed / np.float32(span), 0.0, 1.0)
        initial, final = np.float32(self.initial_sparsity), np.float32(self.final_sparsity)
        return final + (initial - final) * ops.power(1.0 - progress, np.float32(self.power))


def schedule_values(schedule, step):
    """Asks any schedule (ours or tfmot's) about `step`; returns `(bool, float)`.

    Ours answer on the host with no tensor made; any other is called and its
    answer converted."""
    if isinstance(schedule, PruningSchedule):
        return schedule.should_prune(step), schedule.sparsity(step)
    should_prune, sparsity = schedule(step)
    return bool(ops.convert_to_numpy(should_prune)), float(ops.convert_to_numpy(sparsity))


def as_schedule(schedule):
    """`schedule` itself, or ours from its `get_config()` dict; anything else
    that cannot be called is a clear error."""
    if isinstance(schedule, dict):
        classes = {"ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay}
        config = schedule.get("config")
        if schedule.get("class_name") not in classes or not isinstance(config, dict):
            raise ValueError(
                "Invalid value for argument `pruning_schedule`. Received: "
                f"pruning_schedule={schedule!r}. Expected a schedule, or the get_config() "
                "dict of ConstantSparsity or PolynomialDecay."
            )
        return classes[schedule["class_name"]].from_config(config)
    if schedule is not None and not callable(schedule):
        raise TypeError(
            "Invalid value for argument `pruning_schedule`. Received: "
            f"pruning_schedule={schedule!r}. Expected a schedule: step -> (should_prune, "
            "sparsity)."
        )
    return schedule
