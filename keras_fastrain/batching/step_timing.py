"""How long a step of `fit` takes at one batch size, measured through `fit`.

`time_steps` trains short epochs through the model's own `fit` (the same
compiled step, `steps_per_execution` and distribution that training will
use) and times each from the end of its first compiled call. Epochs repeat
(two to five) until the two fastest agree within 3%, and the fastest
counts, so that one noisy epoch does not decide; with several workers every
worker runs three, so their collective steps match.
"""

import time

import keras
import numpy as np

from keras_fastrain import distribute
from keras_fastrain.distribute.sharding import shard

__all__ = ["round_up", "sample_count", "time_steps"]

# Timing epochs per candidate: at least, at most, and how close the two
# fastest must be to stop.
MIN_REPEATS, MAX_REPEATS, STABLE = 2, 5, 0.03


def time_steps(model, fit, x, y, sample_weight, batch_size, steps_per_trial):
    """Seconds per step of `fit` at `batch_size`, over `steps_per_trial`
    steps: the fastest of two to five epochs (until the two fastest agree
    within 3%; always three with several workers, whose epochs must
    match), each timed from the end of its first compiled call, so that
    neither the compilation, nor a second trace (TensorFlow may trace a new
    shape again in the next epoch), nor the epoch's set-up counts."""
    per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))
    timed_steps = round_up(steps_per_trial, per_call)
    steps = per_call + timed_steps
    count = sample_count(x)
    engine = distribute.current()
    timer = _StepTimer(adaptive=engine.size == 1)
    repeats = MAX_REPEATS if engine.size == 1 else MIN_REPEATS + 1
    options = {"epochs": repeats, "verbose": 0, "callbacks": [timer]}
    if batch_size * steps <= count or (engine.size > 1 and engine.feeds_global_batch()):
        # Views of the first rows (copies when they must wrap around; a
        # strategy over workers shards arrays itself).
        rows = _first_rows(batch_size * steps, count)
        fit(
            shard(x, rows),
            shard(y, rows),
            batch_size=batch_size,
            shuffle=False,
            sample_weight=shard(sample_weight, rows),
            **options,
        )
    else:  # batch by batch, rather than a copy of the data many times over
        fit(_CycledBatches((x, y, sample_weight), batch_size, steps), **options)
    return min(timer.seconds) / timed_steps


class _CycledBatches(keras.utils.PyDataset):
    """`steps` batches of consecutive rows, wrapping around the arrays."""

    def __init__(self, arrays, batch_size, steps):
        super().__init__()
        self.arrays = tuple(a for a in arrays if a is not None)
        self.batch_size, self.steps = batch_size, steps
        self.count = sample_count(arrays[0])

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        rows = np.arange(index * self.batch_size, (index + 1) * self.batch_size) % self.count
        return tuple(shard(a, rows) for a in self.arrays)


class _StepTimer(keras.callbacks.Callback):
    """Times each epoch from the end of its first batch (or compiled call);
    when `adaptive`, stops the fit once the two fastest epochs agree."""

    def __init__(self, adaptive=True):
        super().__init__()
        self.seconds = []
        self.adaptive = adaptive

    def on_epoch_begin(self, epoch, logs=None):
        self._start = None

    def on_train_batch_end(self, batch, logs=None):
        if self._start is None:
            self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        fastest = sorted(self.seconds)[:2]
        if (
            self.adaptive
            and len(fastest) >= MIN_REPEATS
            and fastest[1] <= fastest[0] * (1 + STABLE)
        ):
            self.model.stop_training = True


def sample_count(x):
    arrays = keras.tree.flatten(x)
    if not arrays or not all(hasattr(a, "shape") and len(a.shape) >= 1 for a in arrays):
        return None
    return len(arrays[0])


def _first_rows(count, available):
    """Rows `0..count-1`, wrapping around; a slice (so views, not copies,
    of the arrays) when there are enough."""
    if count <= available:
        return slice(0, count)
    return np.arange(count) % available


def round_up(value, multiple):
    return -(-value // multiple) * multiple
