"""How long a step of `fit` takes at one batch size, measured through `fit`.

`time_steps` trains one short epoch through the model's own `fit` (the same
compiled step, `steps_per_execution` and distribution that training will
use): a first compiled call, which compiles the step for the batch's shape
and is not timed, then groups of steps timed each, until the two fastest
groups agree within 3% (two to five groups; always three with several
workers, whose steps must match), and the fastest counts, so that one noisy
group does not decide. Neither the compilation nor the epoch's set-up
counts.

A `RowStream` gives each measurement fresh rows of the training data, in a
shuffled order: a measurement whose training is kept (a search run by
`FastModel.fit`) then trains on each sample once, as an epoch would. The
rows of a measurement are a view of the arrays (the first rows, without a
stream) or a copy of at most 256 MiB; beyond that they are fed batch by
batch from a `PyDataset`, in order, so that a measurement never copies
large image arrays whole (a `tf.distribute` strategy over several workers,
which must be given arrays, gets a copy of any size).
"""

import functools
import time

import keras
import numpy as np

from keras_fastrain import distribute
from keras_fastrain.distribute.sharding import shard
from keras_fastrain.validation import check_int

__all__ = ["RowStream", "round_up", "sample_count", "time_steps"]

# Timed groups per measurement: at least, at most, and how close the two
# fastest must be to stop.
MIN_REPEATS, MAX_REPEATS, STABLE = 2, 5, 0.03
# Rows that are not a view of the arrays are copied for a measurement up to
# this size; beyond it they are fed batch by batch.
MAX_COPY_BYTES = 256 * 2**20


class RowStream:
    """Row numbers of `count` samples in a shuffled order, handed out in
    turn: every row once before any row twice.

    Args:
        count: Integer >= 1. The number of samples.
        seed: Integer. The shuffle's seed (the same on every worker that
            must feed the same rows).

    Attributes:
        samples: Integer. The rows used so far.
        steps: Integer. The training steps they made.

    Example:

    ```python
    rows = RowStream(60_000, seed=0)
    first = rows.peek(4096)  # the next 4,096 rows, in a shuffled order
    rows.use(2048, steps=64)  # half of them trained, in 64 steps
    ```
    """

    def __init__(self, count, seed):
        self.count = check_int("count", count, minimum=1)
        self._rng = np.random.default_rng(seed)
        self._order = np.zeros(0, dtype=np.int64)
        self.samples = self.steps = 0

    def peek(self, size):
        """The next `size` rows (a new shuffle of all rows follows the last)."""
        while len(self._order) < size:
            self._order = np.concatenate([self._order, self._rng.permutation(self.count)])
        return self._order[:size]

    def use(self, size, steps):
        """Marks the next `size` rows used, by `steps` training steps."""
        self.peek(size)
        self._order = self._order[size:]
        self.samples += size
        self.steps += steps

    def forget_training(self):
        """Counts no rows or steps as trained (the model was put back);
        the rows already handed out stay used."""
        self.samples = self.steps = 0


def time_steps(model, fit, x, y, sample_weight, batch_size, steps_per_trial, rows=None):
    """Seconds per step of `fit` at `batch_size`, over `steps_per_trial`
    steps (rounded up to whole compiled calls): the fastest of two to five
    timed groups of one epoch, after its first compiled call.

    Args:
        model: The compiled model `fit` trains.
        fit: The `fit` to time.
        x, y, sample_weight: The training arrays.
        batch_size: Integer. The batch `fit` gets.
        steps_per_trial: Integer >= 1. Steps per timed group.
        rows: A `RowStream` over the arrays, or `None`. With a stream the
            epoch trains on its next rows, and marks those it trained on
            used; without one, on the arrays' first rows.

    Returns:
        Float: seconds per step.
    """
    per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))
    timed_steps = round_up(steps_per_trial, per_call)
    engine = distribute.current()
    adaptive = engine.size == 1
    count = sample_count(x)
    groups = MIN_REPEATS + 1
    if adaptive:  # up to five, as many as the arrays hold rows for (at least two)
        held = (count // batch_size - per_call) // timed_steps
        groups = min(MAX_REPEATS, max(MIN_REPEATS, held))
    steps = per_call + groups * timed_steps
    timer = _StepTimer(timed_steps // per_call, adaptive)
    options = {"epochs": 1, "verbose": 0, "callbacks": [timer]}
    if rows is not None and rows.count != count:
        raise ValueError(
            f"Invalid value for argument `rows`: a RowStream over {rows.count} rows, "
            f"for arrays of {count}. Expected a stream over the arrays' rows."
        )
    needed = batch_size * steps
    taken = _first_rows(needed, count) if rows is None else rows.peek(needed)
    copy_bytes = needed * _row_bytes((x, y, sample_weight))
    if (
        isinstance(taken, slice)
        or copy_bytes <= MAX_COPY_BYTES
        or (engine.size > 1 and engine.feeds_global_batch())
    ):
        # Views of the first rows, or a bounded copy of the rows taken (a
        # strategy over workers shards arrays itself, so it gets a copy of
        # any size).
        feed = functools.partial(
            fit,
            shard(x, taken),
            shard(y, taken),
            batch_size=batch_size,
            shuffle=False,
            sample_weight=shard(sample_weight, taken),
        )
    else:  # batch by batch, in order, rather than a large copy
        data = _Batches((x, y, sample_weight), batch_size, steps, taken)
        feed = functools.partial(fit, data, shuffle=False)
    try:
        feed(**options)
    finally:  # the calls that ran trained the model, also before an error
        trained = per_call * timer.calls
        if rows is not None:
            rows.use(batch_size * trained, trained)
    return min(timer.seconds) / timed_steps


class _Batches(keras.utils.PyDataset):
    """`steps` batches of the rows `order` lists (wrapping around)."""

    def __init__(self, arrays, batch_size, steps, order):
        super().__init__()
        self.arrays = tuple(a for a in arrays if a is not None)
        self.batch_size, self.steps = batch_size, steps
        self.order = order

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        rows = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
        rows = self.order[rows % len(self.order)]
        return tuple(shard(a, rows) for a in self.arrays)


class _StepTimer(keras.callbacks.Callback):
    """Times groups of `calls_per_group` compiled calls after the first
    call; when `adaptive`, stops the fit once the two fastest agree."""

    def __init__(self, calls_per_group, adaptive=True):
        super().__init__()
        self.calls_per_group = calls_per_group
        self.adaptive = adaptive
        self.seconds, self.calls, self._mark = [], 0, None

    def on_train_batch_end(self, batch, logs=None):
        for value in (logs or {}).values():  # wait for the call to finish
            keras.ops.convert_to_numpy(value)
            break
        now = time.perf_counter()
        self.calls += 1
        if self._mark is not None and (self.calls - 1) % self.calls_per_group:
            return
        if self._mark is not None:
            self.seconds.append(now - self._mark)
        self._mark = now
        fastest = sorted(self.seconds)[:2]
        if (
            self.adaptive
            and len(fastest) >= MIN_REPEATS
            and fastest[1] <= fastest[0] * (1 + STABLE)
        ):
            self.model.stop_training = True


def _row_bytes(arrays):
    """Bytes one row of every array in `arrays` takes (any array type with
    a shape: NumPy, a backend's tensor, a DataFrame)."""
    total = 0
    for array in keras.tree.flatten(arrays):
        if array is None:
            continue
        try:
            itemsize = np.dtype(keras.backend.standardize_dtype(array.dtype)).itemsize
            total += itemsize * int(np.prod(array.shape[1:]))
        except (AttributeError, TypeError, ValueError):
            total += np.asarray(array[:1]).nbytes
    return total


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
