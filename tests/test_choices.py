"""The "auto" choices: what each picks on each backend and device, and why."""

import pytest

from keras_fastrain.choices import (
    AUTO_STEPS_PER_EXECUTION,
    Choice,
    choose_jit_compile,
    choose_mixed_precision,
    choose_steps_per_execution,
)

pytestmark = pytest.mark.smoke


@pytest.mark.parametrize(
    ("backend", "devices", "expected"),
    [
        ("tensorflow", ["cpu:0"], False),  # Keras's own; a fit measures XLA
        ("tensorflow", ["cpu:0", "gpu:0"], True),
        ("jax", ["cpu:0"], True),
        ("torch", ["cpu:0"], False),
    ],
)
def test_jit_compile_auto_per_backend(backend, devices, expected):
    choice = choose_jit_compile(backend=backend, devices=devices)
    assert (choice.option, choice.value) == ("jit_compile", expected)
    assert choice.reason and not choice.changes_results


def test_jit_compile_is_off_on_tensorflow_when_xla_cannot_compile_a_layer():
    choice = choose_jit_compile(backend="tensorflow", xla_incompatible=["ImageAugmentation"])
    assert choice.value is False
    assert "XLA cannot compile ImageAugmentation" in choice.reason


def test_given_values_are_kept():
    assert choose_jit_compile(False, backend="jax") == Choice("jit_compile", False, "given")
    assert choose_steps_per_execution(4, backend="tensorflow").value == 4


def test_steps_per_execution_auto():
    assert choose_steps_per_execution(backend="jax").value == AUTO_STEPS_PER_EXECUTION
    assert choose_steps_per_execution(backend="torch").value == 1


def test_several_tensorflow_replicas_run_one_step_per_call_without_xla():
    steps = choose_steps_per_execution(backend="tensorflow", distributed=True)
    assert steps.value == 1 and "keras#19246" in steps.reason
    assert choose_steps_per_execution(backend="jax", distributed=True).value > 1
    assert choose_jit_compile(backend="tensorflow", distributed=True).value is False
    assert choose_jit_compile(backend="jax", distributed=True).value is True


def test_mixed_precision_auto_keeps_a_global_policy_the_user_set():
    choice = choose_mixed_precision(devices=["cpu:0"], current="mixed_bfloat16")
    assert choice.value == "mixed_bfloat16" and choice.changes_results


@pytest.mark.parametrize(
    ("devices", "expected", "changes"),
    [
        (["cpu:0"], "float32", False),
        (["gpu:0", "gpu:1"], "mixed_float16", True),
        (["tpu:0"], "mixed_bfloat16", True),
    ],
)
def test_mixed_precision_auto_per_device(devices, expected, changes):
    choice = choose_mixed_precision(devices=devices)
    assert (choice.value, choice.changes_results) == (expected, changes)
    assert ("changes numerics" in str(choice)) is changes


def test_mixed_precision_given_as_bool_or_policy():
    assert choose_mixed_precision(True, devices=["gpu:0"]).value == "mixed_float16"
    assert choose_mixed_precision(False, devices=["gpu:0"]).value == "float32"
    assert choose_mixed_precision("mixed_bfloat16", devices=["cpu:0"]).changes_results


def test_mixed_precision_defaults_to_the_devices_keras_sees():
    assert choose_mixed_precision().value in ("float32", "mixed_float16", "mixed_bfloat16")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: choose_jit_compile("yes"), ValueError, r"Received: jit_compile='yes'"),
        (lambda: choose_steps_per_execution(0), ValueError, r"Received: steps_per_execution=0"),
        (
            lambda: choose_steps_per_execution(8, backend="torch"),
            ValueError,
            r"steps_per_execution=8\. Expected 1: Keras's torch backend needs 1",
        ),
        (
            lambda: choose_steps_per_execution(4, backend="tensorflow", distributed=True),
            ValueError,
            r"steps_per_execution=4\. Expected 1: .*keras#19246",
        ),
        (
            lambda: choose_mixed_precision("fp16", devices=["cpu:0"]),
            ValueError,
            r"Received: mixed_precision='fp16'.*'mixed_float16'",
        ),
    ],
)
def test_invalid_requests_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()
