"""`horovod.tensorflow.keras.callbacks`'s callbacks, plus `HorovodCallback`."""

from keras_fastrain.callbacks.distributed import (
    BroadcastGlobalVariablesCallback,
    HorovodCallback,
    LearningRateWarmupCallback,
    MetricAverageCallback,
)

__all__ = [
    "BroadcastGlobalVariablesCallback",
    "HorovodCallback",
    "LearningRateWarmupCallback",
    "MetricAverageCallback",
]
