"""A cheap guard that every worker of a multi-worker run holds the same weights.

Data-parallel training is only right while the workers' copies of the model
stay equal. They drift apart silently when a model was built outside the
engine (its gradients are then not averaged), when no broadcast gave them one
start, or when a callback changed the weights on some workers only. Each
check sends two numbers per worker (the sum and the absolute sum of the
trainable weights, in float64) through the engine's all-gather and raises
`WorkersDisagreeError` on every worker when they differ, naming the likely
causes, instead of letting the run end with a different model on each worker.

`BroadcastGlobalVariablesCallback` checks after the first step that follows
its broadcast, `MetricAverageCallback` at each epoch's end, and `FastModel`
adds `AgreementGuard` (each epoch's end) on engines whose workers could
disagree. One process, and JAX multi-process (one global copy
of each variable), have nothing to check.
"""

import keras
import numpy as np

from keras_fastrain import distribute
from keras_fastrain.devices import host_array

__all__ = [
    "AgreementGuard",
    "check_agreement",
    "disagreement",
    "fingerprint",
    "WorkersDisagreeError",
]

# Equal weights give equal fingerprints bit for bit; the tolerance only
# absorbs a reduction order that differs between workers.
RELATIVE_TOLERANCE = 1e-5


class WorkersDisagreeError(RuntimeError):
    """The workers of one run hold different weights.

    Raised on every worker by the agreement check (see this module), with
    the weight sums of each worker and the likely causes.

    Example:

    ```python
    try:
        model.fit(x, y, epochs=5, callbacks=[keras_fastrain.callbacks.MetricAverageCallback()])
    except keras_fastrain.callbacks.WorkersDisagreeError as error:
        print(error)  # names the likely causes
    ```
    """


def fingerprint(variables):
    """`[sum, sum of absolute values]` of `variables`, in float64."""
    total = np.zeros(2, np.float64)
    for variable in variables:
        value = host_array(variable).astype(np.float64)
        total += (value.sum(), np.abs(value).sum())
    return total


def disagreement(fingerprints):
    """`None` if every row of `fingerprints` agrees with the first, else a
    description of the rows."""
    fingerprints = np.asarray(fingerprints, np.float64)
    scale = np.maximum(np.abs(fingerprints[0]), 1.0)
    if np.all(np.abs(fingerprints - fingerprints[0]) <= RELATIVE_TOLERANCE * scale):
        return None
    return ", ".join(
        f"worker {rank}: sum {row[0]:.6g}, absolute sum {row[1]:.6g}"
        for rank, row in enumerate(fingerprints)
    )


def check_agreement(model, when, engine=None):
    """Raises `WorkersDisagreeError` on every worker if their trainable
    weights differ; a collective, so every worker must call it.

    Args:
        model: The `keras.Model` being trained.
        when: String. When the check runs, for the message ("after the
            first step").
        engine: The `Engine`, or `None` for `keras_fastrain.distribute.current()`.
    """
    engine = engine or distribute.current()
    if engine.size == 1 or not engine.weights_can_diverge:
        return
    found = disagreement(engine.allgather(fingerprint(model.trainable_weights)))
    if found is None:
        return
    raise WorkersDisagreeError(
        f"The workers hold different weights {when} ({found}): each would "
        "go on training a different model. Likely causes: the model was built before "
        "keras_fastrain.distribute.init() or outside engine.scope(), so its gradients "
        "are not averaged; on Horovod, an optimizer not wrapped in DistributedOptimizer "
        "or no BroadcastGlobalVariablesCallback(0); or a callback that changes weights "
        "on some workers only."
    )


class AgreementGuard(keras.callbacks.Callback):
    """Checks that the workers' weights agree at each epoch's end (see
    `check_agreement`). Epoch hooks only: a batch hook would switch off
    Keras's asynchronous dispatch for every step."""

    def on_epoch_end(self, epoch, logs=None):
        check_agreement(self.model, f"at the end of epoch {epoch + 1}")
