"""The pruning part: a pruned model's masks follow their schedule in `fit`.

FastModel's `pruning=` option wraps the prunable layers at construction
(`prune_low_magnitude`); at `fit` this part adds `UpdatePruningStep` when
the model has pruning wrappers and the user gave none, so there is no
callback to remember.
"""

from keras_fastrain.parts.base import Part
from keras_fastrain.pruning import UpdatePruningStep
from keras_fastrain.pruning.callbacks import pruning_wrappers

__all__ = ["PruningPart", "pruning_arguments"]


class PruningPart(Part):
    """Adds `UpdatePruningStep` to `fit` for a model that prunes."""

    name = "pruning"

    def on_run(self, plan):
        if plan.method != "fit" or not pruning_wrappers(plan.model):
            return
        if not any(isinstance(c, UpdatePruningStep) for c in plan.callbacks):
            plan.callbacks.append(UpdatePruningStep())


def pruning_arguments(pruning):
    """`prune_low_magnitude`'s keyword arguments from FastModel's `pruning=`."""
    if isinstance(pruning, dict):
        return pruning
    if callable(pruning):
        return {"pruning_schedule": pruning}
    raise TypeError(
        f"Invalid value for argument `pruning`. Received: pruning={pruning!r}. Expected "
        "a pruning schedule (e.g. keras_fastrain.pruning.PolynomialDecay) or a dict of "
        "prune_low_magnitude's arguments."
    )
