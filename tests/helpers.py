"""Helpers shared by the tests."""

import os
import subprocess
import sys


def run_python(code, env=None, timeout=300):
    """Runs `code` in a fresh Python process; returns the CompletedProcess.

    Used where a test needs a process of its own: another Keras backend or
    Keras home, or a module hidden before Keras is imported.
    """
    return run_python_args(["-c", code], env=env, timeout=timeout)


def run_python_args(args, env=None, timeout=300):
    """Runs `python ARGS...` (e.g. `["-m", "keras_fastrain", "demo"]`)."""
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
