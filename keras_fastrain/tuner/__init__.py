"""KerasTuner, for speed: search the knobs that make training fast, bound a
search in time, and tune for the time to reach an accuracy.

- `hypermodel.py`: `FastHyperModel`, the speed knobs (batch size or a
  growing batch, learning-rate rule, augmentation strength, pruning
  sparsity, precision) as hyperparameters of your own model.
- `objective.py`: `TimeToAccuracy`, minimise the seconds to a target.
- `budget.py`: `SearchBudget`, the whole search stops after a given time,
  and `BudgetedOracle`, the oracle side of it for a tuner of your own.
- `tuners.py`: `FastTuner`, which adds those to any tuner, and
  `RandomSearch`, `BayesianOptimization`, `Hyperband`, `GridSearch` with it.
- `profiles.py`: each trial's `TimingProfiler` summary, and `speed_report`.

Needs KerasTuner: `pip install "keras-fastrain[tuner]"`.
"""

try:
    import keras_tuner  # noqa: F401
except ImportError as error:  # the extra is not installed
    raise ImportError(
        f"keras_fastrain.tuner needs KerasTuner: pip install 'keras-fastrain[tuner]' ({error})."
    ) from error

from keras_fastrain.tuner.budget import BudgetedOracle, SearchBudget
from keras_fastrain.tuner.hypermodel import FastHyperModel
from keras_fastrain.tuner.objective import TimeToAccuracy, TimeToTargetLogger
from keras_fastrain.tuner.profiles import speed_report, trial_profile
from keras_fastrain.tuner.tuners import (
    BayesianOptimization,
    FastTuner,
    GridSearch,
    Hyperband,
    RandomSearch,
)

__all__ = [
    "BayesianOptimization",
    "BudgetedOracle",
    "FastHyperModel",
    "FastTuner",
    "GridSearch",
    "Hyperband",
    "RandomSearch",
    "SearchBudget",
    "TimeToAccuracy",
    "TimeToTargetLogger",
    "speed_report",
    "trial_profile",
]
