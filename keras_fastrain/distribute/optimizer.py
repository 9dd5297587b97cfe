"""`DistributedOptimizer`: Horovod's optimizer wrapper, for Keras 3."""

import logging
import warnings

import keras

from keras_fastrain.distribute.horovod import COMPRESSIONS, AveragingOptimizer
from keras_fastrain.distribute.resolve import current
from keras_fastrain.validation import check_bool, check_choice, check_int

__all__ = ["DistributedOptimizer"]

logger = logging.getLogger("keras_fastrain")

_said_for = set()  # engines whose "nothing to add" line was logged


def DistributedOptimizer(
    optimizer,
    backward_passes_per_step=1,
    compression="none",
    name=None,
    average_aggregated_gradients=False,
):
    """Averages gradients over the workers before `optimizer` applies them.

    On the Horovod engine each worker computes its own gradients, and the
    returned optimizer all-reduces them (mean) through Horovod before every
    update. Every other engine (MultiWorkerMirroredStrategy, JAX
    multi-process, MirroredStrategy, DataParallel, one process) already
    averages gradients inside the training step: there `optimizer` comes
    back unchanged (rebuilt from its config when `name` or
    `backward_passes_per_step > 1` asks for a change), and the log says so
    once; `compression="fp16"` raises there, since no gradients travel.

    Args:
        optimizer: A `keras.optimizers.Optimizer`, not yet built.
        backward_passes_per_step: Integer. Gradients of that many batches are
            summed locally before one exchange and one update (Keras's
            `gradient_accumulation_steps`). Defaults to 1.
        compression: `"none"` or `"fp16"` (gradients travel as float16 and
            are cast back; Horovod only). Defaults to `"none"`.
        name: String or `None`. A name for the returned optimizer.
        average_aggregated_gradients: Bool. Horovod's switch between summing
            (`False`, its default) and averaging the gradients of the
            `backward_passes_per_step` batches. Keras's accumulation always
            averages; with `False` and more than one pass a warning says so
            (for SGD, multiply the learning rate by the passes to sum).
            Defaults to `False`.

    Returns:
        An instance of `optimizer`'s class. On the Horovod engine, of its
        `Distributed<Name>` subclass (`DistributedAdam` for `Adam`; see
        `keras_fastrain.distribute.horovod.distributed_optimizer_class`),
        which a saved model keeps and loads back wherever keras_fastrain
        is imported.

    Raises:
        TypeError: if `optimizer` is not a Keras optimizer.
        ValueError: for an invalid argument, an optimizer that already holds
            state, or one that already averages over the workers.

    Example:

    ```python
    engine = keras_fastrain.distribute.init()
    optimizer = keras_fastrain.DistributedOptimizer(keras.optimizers.SGD(0.01 * engine.size))
    model.compile(optimizer, "sparse_categorical_crossentropy")
    ```
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            f"Invalid value for argument `optimizer`. Received: optimizer={optimizer!r}. "
            "Expected a keras.optimizers.Optimizer."
        )
    check_int("backward_passes_per_step", backward_passes_per_step, minimum=1)
    check_choice("compression", compression, COMPRESSIONS)
    check_bool("average_aggregated_gradients", average_aggregated_gradients)
    if backward_passes_per_step > 1 and not average_aggregated_gradients:
        warnings.warn(
            f"DistributedOptimizer: the gradients of the {backward_passes_per_step} "
            "backward passes are averaged (Keras's gradient accumulation), where Horovod "
            "sums them by default. Pass average_aggregated_gradients=True to say that is "
            f"intended; for SGD, a learning rate {backward_passes_per_step} times larger "
            "gives Horovod's sum.",
            stacklevel=2,
        )
    if isinstance(optimizer, AveragingOptimizer):
        raise ValueError(
            f"DistributedOptimizer: optimizer {optimizer.name!r} is a "
            f"{type(optimizer).__name__}, which already averages gradients over the "
            "workers; wrap the plain optimizer once."
        )
    if optimizer.built:
        raise ValueError(
            f"DistributedOptimizer: optimizer {optimizer.name!r} already holds state; wrap "
            "a new optimizer, before compile()."
        )
    config = optimizer.get_config()
    if backward_passes_per_step > 1:
        config["gradient_accumulation_steps"] = backward_passes_per_step
    if name is not None:
        config["name"] = name
    engine = current()
    if backward_passes_per_step > 1 and engine.in_step_replicas and _on_tensorflow():
        raise ValueError(
            f"backward_passes_per_step={backward_passes_per_step} needs Keras's gradient "
            "accumulation, which cannot run under a tf.distribute strategy (Keras 3.15 "
            "applies it inside a cond, where the strategy cannot synchronize: 'merge_call "
            f"called while defining a new graph'). On the {engine.name} engine use 1, or a "
            "larger global batch."
        )
    if engine.averages_gradients:
        if compression != "none":
            raise ValueError(
                f"compression={compression!r} applies to Horovod's gradient exchange; "
                f"the {engine.name} engine exchanges gradients itself."
            )
        if engine.name not in _said_for:
            _said_for.add(engine.name)
            why = (
                "one process with one replica has no gradients to average"
                if engine.num_replicas == 1
                else f"the {engine.name} engine already averages gradients in the training step"
            )
            logger.info("DistributedOptimizer: %s; the optimizer is used as it is.", why)
        return (
            type(optimizer).from_config(config) if config != optimizer.get_config() else optimizer
        )
    return engine.averaging_optimizer(type(optimizer), config, compression)


def _on_tensorflow():
    return keras.backend.backend() == "tensorflow"
