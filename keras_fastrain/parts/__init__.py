"""The parts FastModel applies, each one speed-up behind one interface.

A part (`Part`) is given the model and the call's arguments and contributes
model or optimizer changes, data transforms, callbacks, and constraints on
other parts' choices. `FastModel.compile` and `fit` / `evaluate` /
`predict` first collect every part's constraints, then call each part in
this order, then call Keras:

1. `EnginePart` (`engine.py`): where it trains; the engine's scope.
2. `AugmentationPart` (`augmentation.py`): builds the augmentation; no XLA
   with it on TensorFlow.
3. `PruningPart` (`pruning.py`): `UpdatePruningStep` for a pruned model.
4. `CompileOptionsPart` (`compile_options.py`): precision, XLA (measured at
   the first long-enough fit on TensorFlow) and steps
   per call, honouring the constraints.
5. `BatchSizePart` (`batch_size.py`): the batch-size search and a batch
   that grows.
6. `LearningRatePart` (`learning_rate.py`): `learning_rate="auto"`, the
   range test at the chosen batch, kept only when it trains faster, and a
   cosine decay from it.
7. `WeightAveragePart` (`weight_average.py`): `ema=`, validation on a
   moving average of the weights.
8. `LabelSmoothingPart` (`label_smoothing.py`): `label_smoothing=`, the
   crossentropy losses train on smoothed labels.
9. `SelectiveBackpropPart` (`selective_backprop.py`): `selective_backprop=`,
   each step trains on its batch's highest-loss samples.
10. `ProgressiveResizingPart` (`progressive_resizing.py`):
   `progressive_resizing=`, smaller images early in each fit.
11. `LayerFreezingPart` (`layer_freezing.py`): `layer_freezing=`, the first
   layers stop training late in each fit.
12. `WorkersPart` (`workers.py`): each worker's share of the data, and the
   callbacks several workers need.
13. `InputPipelinePart` (`input_pipeline.py`): the input overlaps the step.
14. The user's own parts (`FastModel(parts=[...])`), in the order given.

Each part also works without FastModel: the functions and callbacks it
applies are public (`keras_fastrain.callbacks`, `keras_fastrain.batching`,
`keras_fastrain.pruning`, `keras_fastrain.distribute`).
"""

from keras_fastrain.parts.augmentation import AugmentationPart
from keras_fastrain.parts.base import CompilePlan, Constraint, Part, RunPlan
from keras_fastrain.parts.batch_size import BatchSizePart
from keras_fastrain.parts.callback_part import CallbackPart
from keras_fastrain.parts.compile_options import CompileOptionsPart
from keras_fastrain.parts.engine import EnginePart
from keras_fastrain.parts.input_pipeline import InputPipelinePart
from keras_fastrain.parts.label_smoothing import LabelSmoothingPart
from keras_fastrain.parts.layer_freezing import LayerFreezingPart
from keras_fastrain.parts.learning_rate import LearningRatePart
from keras_fastrain.parts.progressive_resizing import ProgressiveResizingPart
from keras_fastrain.parts.pruning import PruningPart
from keras_fastrain.parts.selective_backprop import SelectiveBackpropPart
from keras_fastrain.parts.weight_average import WeightAveragePart
from keras_fastrain.parts.workers import WorkersPart

__all__ = [
    "AugmentationPart",
    "BatchSizePart",
    "CallbackPart",
    "CompileOptionsPart",
    "CompilePlan",
    "Constraint",
    "EnginePart",
    "InputPipelinePart",
    "LabelSmoothingPart",
    "LayerFreezingPart",
    "LearningRatePart",
    "Part",
    "ProgressiveResizingPart",
    "PruningPart",
    "RunPlan",
    "SelectiveBackpropPart",
    "WeightAveragePart",
    "WorkersPart",
    "builtin_parts",
]


def builtin_parts():
    """A fresh list of the built-in parts, in the order FastModel applies them."""
    return [
        EnginePart(),
        AugmentationPart(),
        PruningPart(),
        CompileOptionsPart(),
        BatchSizePart(),
        LearningRatePart(),
        WeightAveragePart(),
        LabelSmoothingPart(),
        SelectiveBackpropPart(),
        ProgressiveResizingPart(),
        LayerFreezingPart(),
        WorkersPart(),
        InputPipelinePart(),
    ]
