"""Any `tf.distribute.Strategy` as an engine; `MirroredStrategy` for local devices."""

import keras

from keras_fastrain import _keras_internals
from keras_fastrain.distribute.engine import Engine

__all__ = ["mirrored_engine", "TFStrategyEngine"]


class TFStrategyEngine(Engine):
    """Runs Keras's TensorFlow trainer under a `tf.distribute` strategy.

    Keras's own contract is that the model, its optimizer and its metrics are
    created under `strategy.scope()`. The engine keeps it for the user:
    variables made before (a functional model's layers are built as soon as
    they are called) are re-created under the scope, and an optimizer object
    made outside it is rebuilt from its config inside.

    Args:
        strategy: A `tf.distribute.Strategy`.
        reason: String. Why this engine was chosen.
    """

    name = "mirrored"

    def __init__(self, strategy, reason="given"):
        super().__init__(reason)
        self.strategy = strategy

    @property
    def num_replicas(self):
        return self.strategy.num_replicas_in_sync

    @property
    def devices(self):
        return tuple(getattr(self.strategy.extended, "worker_devices", ()))

    def describe(self):
        return f"{type(self.strategy).__name__} over {', '.join(self.devices)}"

    def scope(self):
        return self.strategy.scope()

    def adopt(self, model, variables):
        _keras_internals.set_tf_trainer_strategy(model, self.strategy)
        return sum(_keras_internals.recreate_tf_variable(v, self.strategy) for v in variables)

    def prepare_optimizer(self, optimizer):
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            return optimizer  # a name or config: built under the scope by compile
        if _keras_internals.tf_optimizer_strategy(optimizer) is self.strategy:
            return optimizer
        if optimizer.built:
            raise ValueError(
                f"The optimizer {optimizer.name!r} already holds variables created "
                f"outside {type(self.strategy).__name__}'s scope. Pass a new "
                "optimizer (or its name) to compile()."
            )
        with self.strategy.scope():
            return type(optimizer).from_config(optimizer.get_config())


def mirrored_engine(devices, reason):
    """A `MirroredStrategy` over `devices` (TensorFlow device names)."""
    import tensorflow as tf

    return TFStrategyEngine(tf.distribute.MirroredStrategy(list(devices)), reason)
