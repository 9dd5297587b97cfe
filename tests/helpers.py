"""Helpers shared by the tests."""

import os
import subprocess
import sys

import keras


def run_python(code, env=None, timeout=300):
    """Runs `code` in a fresh Python process; returns the CompletedProcess.

    Used where a test needs a process of its own: another Keras backend or
    Keras home, or a module hidden before Keras is imported.
    """
    return run_python_args(["-c", code], env=env, timeout=timeout)


def run_python_args(args, env=None, timeout=300, input_text=None):
    """Runs `python ARGS...` (e.g. `["-m", "keras_fastrain", "demo"]`),
    with `input_text` on its stdin."""
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
    )


class InterruptAtEpoch(keras.callbacks.Callback):
    """Raises `KeyboardInterrupt` when `epoch` begins: a run killed there."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated interruption")


class FakeClock:
    """Stands in for `time.perf_counter`: returns `now`, which tests advance."""

    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def digits_model(hidden=32, learning_rate=1e-3):
    """A small seeded classifier for scikit-learn's 8x8 digits, compiled."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(learning_rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
