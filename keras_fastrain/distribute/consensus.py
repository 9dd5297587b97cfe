"""Decisions that change training, made the same on every worker.

A callback that stops training or restores weights must decide the same on
every worker, or the workers' collectives fall out of step and hang. Callbacks
ask here instead of acting on their own view; the answers come from the
process's engine (`keras_fastrain.distribute.current()`): in a single process
the local decision is the decision, with several workers it is reduced over
them through the engine's collectives.
"""

import json

import numpy as np

from keras_fastrain.distribute.resolve import current

__all__ = ["any_worker", "gather", "is_chief"]


def any_worker(flag):
    """Returns `True` on every worker if `flag` is `True` on any worker.

    Args:
        flag: Bool. This worker's decision.
    """
    engine = current()
    if engine.size == 1:
        return bool(flag)
    return bool(engine.allreduce(np.asarray(1 if flag else 0, "int32"), "max"))


def is_chief():
    """Returns whether this worker reports for all (prints, writes files)."""
    return current().is_chief


def gather(value):
    """Returns the list of every worker's `value`, in rank order, on every worker.

    Args:
        value: A JSON-serializable value (numbers, lists, dicts).
    """
    engine = current()
    if engine.size == 1:
        return [value]
    data = np.frombuffer(json.dumps(value).encode(), "uint8")
    length = int(engine.allreduce(np.asarray(data.size, "int64"), "max"))
    padded = np.zeros(length, "uint8")
    padded[: data.size] = data
    rows = engine.allgather(padded)
    return [json.loads(bytes(row).rstrip(b"\0").decode()) for row in rows]
