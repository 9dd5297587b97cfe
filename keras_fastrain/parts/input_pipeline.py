"""The input-pipeline part: input pipelines that keep the train step fed.

`fit` spends its time either in the train step or waiting for the next
batch. Keras already feeds numpy arrays well (shuffled every epoch, sliced
into batches, prefetched on every backend), so they pass through unchanged.
Two inputs are fed one batch at a time by Keras, in the training thread,
with nothing overlapping the step:

- a `tf.data.Dataset` is used exactly as given: without `prefetch`, its
  `map` and `batch` run only when the step asks for the next batch;
- a `keras.utils.PyDataset` built with the default `workers=1` loads one
  batch at a time: on JAX and torch in the training thread, between steps;
  on TensorFlow in one background thread.

`tune_input` adds `prefetch(tf.data.AUTOTUNE)` to the first and, on
TensorFlow, has the second load several batches at once in threads
(`workers`, Keras's own setting, whose queue keeps the batch order). Not on
JAX and torch: there Keras 3.15.1's threaded queue keeps the batches it
loaded for `fit`'s first-batch peek (the symbolic build) and serves them as
the first epoch's start, so a 22-batch epoch trains on batches 1-11 then
0-10 (seen here; the queue has kept pending batches across restarts since
keras#20123). With `workers=1` the order is right, so it is left as given.
What each sees is otherwise unchanged: same batches, same order, same
`validation_split`, `validation_data`, `sample_weight` and `class_weight`
semantics, because `fit` still does all of that itself. Not done on purpose:
caching a dataset, which would freeze random transforms in its `map`.
"""

import contextlib
import os
import typing

import keras

from keras_fastrain.batching.resizable import ResizableBatches
from keras_fastrain.choices import Choice
from keras_fastrain.parts.base import Part
from keras_fastrain.parts.inputs import is_tf_dataset
from keras_fastrain.validation import AUTO, check_choice

__all__ = ["InputPipelinePart", "input_threads", "restore_workers", "tune_input"]

# Threads for a PyDataset left at workers=1: enough to hide file reads and
# decoding behind the step, few enough not to starve a small machine.
MAX_THREADS = 4


def input_threads():
    """The number of loading threads `tune_input` gives a `PyDataset`."""
    return max(2, min(MAX_THREADS, os.cpu_count() or 1))


def tune_input(data, backend=None):
    """Returns `(data, choice)`: `data` set up to overlap with the step.

    Args:
        data: What `fit`, `evaluate` or `predict` received as `x` (or as
            `validation_data`): arrays, a `tf.data.Dataset`, a
            `keras.utils.PyDataset`, or anything else Keras accepts.
        backend: String or `None`. Defaults to the running Keras backend.

    Returns:
        The data to pass on (a new dataset for tf.data; the same object
        otherwise) and a `Choice` saying what was done, or `None` when
        nothing was. A `PyDataset` is changed in place; use
        `restore_workers` afterwards.
    """
    if is_tf_dataset(data):
        import tensorflow as tf

        return data.prefetch(tf.data.AUTOTUNE), Choice(
            "input_pipeline",
            "tf.data + prefetch(AUTOTUNE)",
            "batches are prepared while the step runs; Keras uses a dataset as given",
        )
    backend = backend or keras.backend.backend()
    if isinstance(data, keras.utils.PyDataset) and data.workers == 1:
        # Read-ahead would serve batches of the old size after a change.
        resizable = isinstance(data, ResizableBatches)
        if data.use_multiprocessing or backend != "tensorflow" or resizable:
            return data, None
        data.workers = input_threads()
        return data, Choice(
            "input_pipeline",
            f"PyDataset in {data.workers} threads",
            "batches load in parallel while the step runs; with workers=1 Keras "
            "loads one at a time",
        )
    return data, None


@contextlib.contextmanager
def restore_workers(*datasets):
    """Puts back the `workers` of the given `PyDataset`s on exit."""
    saved = [(d, d.workers) for d in datasets if isinstance(d, keras.utils.PyDataset)]
    try:
        yield
    finally:
        for dataset, workers in saved:
            dataset.workers = workers


class InputPipelinePart(Part):
    """Sets up `x` (and `validation_data`) to overlap with the step, when
    the `input_pipeline` option is `"auto"`; puts a `PyDataset`'s
    `workers` back when the call returns."""

    name = "input_pipeline"
    options: typing.ClassVar[dict] = {"input_pipeline": AUTO}

    def check_option(self, name, value):
        check_choice(name, value, (AUTO, None))

    def on_run(self, plan):
        validation = plan.kwargs.get("validation_data")
        plan.hold(restore_workers(plan.x, validation))
        if plan.options["input_pipeline"] != AUTO:
            return
        plan.x = self._tuned(plan, plan.x)
        if validation is not None:
            plan.kwargs["validation_data"] = self._tuned(plan, validation)

    @staticmethod
    def _tuned(plan, data):
        data, choice = tune_input(data)
        if choice is not None:
            plan.decide(choice)
        return data
