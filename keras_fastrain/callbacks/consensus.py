"""Decisions that change training, made the same on every worker.

A callback that stops training or restores weights must decide the same on
every worker, or the workers' collectives fall out of step and hang. Callbacks
ask here instead of acting on their own view.

This is the seam where the distribution engines plug in: in a single process
the local decision is the decision. With several workers, `any_worker` becomes
an all-reduce (max) of the flag through the engine in use.
"""


def any_worker(flag):
    """Returns `True` on every worker if `flag` is `True` on any worker.

    Args:
        flag: Bool. This worker's decision.
    """
    return bool(flag)


def is_chief():
    """Returns whether this worker reports for all (prints, writes files)."""
    return True


def gather(value):
    """Returns the list of every worker's `value`, in rank order, on every worker.

    Args:
        value: A JSON-serializable value (numbers, lists, dicts).
    """
    return [value]
