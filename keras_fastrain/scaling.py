"""Learning-rate scaling rules for a larger batch.

A larger batch gives a less noisy gradient, so it can take a larger step.
Two rules are in common use: `"linear"` (Goyal et al. 2017, "Accurate, Large
Minibatch SGD", the Horovod recipe: scale with the batch) and `"sqrt"`
(Krizhevsky 2014; Hoffer et al. 2017: scale with its square root, which suits
adaptive optimizers such as Adam). `None` keeps the rate.
"""

import math

from keras_fastrain.validation import check_choice, check_float, check_int

__all__ = ["rate_comes_from_schedule", "scaled_learning_rate"]

SCALING_RULES = ("linear", "sqrt", None)


def scaled_learning_rate(base_learning_rate, base_batch_size, batch_size, rule="sqrt"):
    """Returns the learning rate for `batch_size` under a scaling `rule`.

    Args:
        base_learning_rate: Float > 0. The rate tuned for `base_batch_size`.
        base_batch_size: Integer >= 1. The batch size that rate was tuned for.
        batch_size: Integer >= 1. The batch size to train with.
        rule: One of `"linear"`, `"sqrt"` or `None`. Defaults to `"sqrt"`.

    Example:

    >>> scaled_learning_rate(1e-3, 32, 512, rule="sqrt")
    0.004
    """
    base_learning_rate = check_float(
        "base_learning_rate", base_learning_rate, low=0, closed=(False, True)
    )
    base_batch_size = check_int("base_batch_size", base_batch_size, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    rule = check_choice("rule", rule, SCALING_RULES)
    ratio = batch_size / base_batch_size
    if rule == "linear":
        return base_learning_rate * ratio
    if rule == "sqrt":
        return base_learning_rate * math.sqrt(ratio)
    return base_learning_rate


def rate_comes_from_schedule(optimizer):
    """Whether `optimizer` (or the one it wraps) takes its learning rate
    from a `LearningRateSchedule`, which a callback cannot simply set."""
    config = getattr(optimizer, "inner_optimizer", optimizer).get_config()
    return isinstance(config.get("learning_rate"), dict)  # a serialized schedule
