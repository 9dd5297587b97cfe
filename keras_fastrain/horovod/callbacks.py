"""`horovod.tensorflow.keras.callbacks`'s callbacks, plus `HorovodCallback`."""

from keras_fastrain.callbacks.distributed import (
    BroadcastGlobalVariablesCallback,
    HorovodCallback,
    LearningRateWarmupCallback,
    MetricAverageCallback,
)
from keras_fastrain.callbacks.learning_rate import LearningRateScheduleCallback

__all__ = [
    "BroadcastGlobalVariablesCallback",
    "HorovodCallback",
    "LearningRateScheduleCallback",
    "LearningRateWarmupCallback",
    "MetricAverageCallback",
]
