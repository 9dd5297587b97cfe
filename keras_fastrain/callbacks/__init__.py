"""Drop-in callbacks for `model.fit`."""

from keras_fastrain.callbacks.adaptive_batch_size import AdaptiveBatchSize
from keras_fastrain.callbacks.agreement import WorkersDisagreeError
from keras_fastrain.callbacks.backup_and_restore import BackupAndRestore
from keras_fastrain.callbacks.distributed import (
    BroadcastGlobalVariablesCallback,
    HorovodCallback,
    LearningRateWarmupCallback,
    MetricAverageCallback,
)
from keras_fastrain.callbacks.early_stopping import EarlyStopping
from keras_fastrain.callbacks.layer_freezing import LayerFreezing
from keras_fastrain.callbacks.learning_rate import LearningRateScheduleCallback
from keras_fastrain.callbacks.measured_ema import MeasuredEMA
from keras_fastrain.callbacks.progressive_resizing import ProgressiveResizing
from keras_fastrain.callbacks.selective_backprop import SelectiveBackprop
from keras_fastrain.callbacks.stop_reason import StopReason
from keras_fastrain.callbacks.timing_profiler import TimingProfiler
from keras_fastrain.callbacks.warmup_decay import WarmupDecay

__all__ = [
    "AdaptiveBatchSize",
    "BackupAndRestore",
    "BroadcastGlobalVariablesCallback",
    "EarlyStopping",
    "HorovodCallback",
    "LayerFreezing",
    "LearningRateScheduleCallback",
    "LearningRateWarmupCallback",
    "MeasuredEMA",
    "MetricAverageCallback",
    "ProgressiveResizing",
    "SelectiveBackprop",
    "StopReason",
    "TimingProfiler",
    "WarmupDecay",
    "WorkersDisagreeError",
]
