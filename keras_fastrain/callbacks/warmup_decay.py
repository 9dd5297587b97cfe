"""`WarmupDecay`: warm the learning rate up, then decay it to the end of the fit.

The schedules behind the fastest training recipes share one shape: a short
warm-up from a fraction of the peak rate (large early steps on random
weights diverge), then a decay to nearly zero at the last step (fast.ai's
one-cycle, the CIFAR-10 speed runs' warm-up and linear or cosine decay,
Goyal et al.'s ImageNet in one hour). Here the decay is a half cosine and
the schedule is sized to the fit's epochs, so a run stopped early by
`EarlyStopping(target=...)` simply ends with a higher rate.

The rate changes `updates_per_epoch` times an epoch (and at every epoch's
start), not at every step: each change is a write to the optimizer between
steps (on JAX, the trainer's state is synced first), and a few dozen steps
at one rate lose nothing against a smooth curve. With an
`AdaptiveBatchSize`, the rate also follows the batch: times its learning
rate rule's factor for the batch reached over the batch it started with.
"""

import math

import keras

from keras_fastrain.callbacks.adaptive_batch_size import AdaptiveBatchSize
from keras_fastrain.callbacks.learning_rate import change_rate, current_rate
from keras_fastrain.devices import host_array
from keras_fastrain.validation import check_float, check_int

__all__ = ["WarmupDecay", "warmup_decay"]


def warmup_decay(progress, warmup=0.05, start_fraction=0.1, final_fraction=0.01):
    """The schedule's multiplier of the peak rate at `progress` in [0, 1].

    Linear from `start_fraction` to 1 over the first `warmup` of the run,
    then a half cosine from 1 down to `final_fraction` at the end.

    Example:

    ```python
    warmup_decay(0.0), warmup_decay(0.05), warmup_decay(1.0)  # (0.1, 1.0, 0.01)
    ```
    """
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return start_fraction + (1.0 - start_fraction) * progress / warmup
    decayed = (progress - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * decayed))


class WarmupDecay(keras.callbacks.Callback):
    """Warm-up then cosine decay of the learning rate over the fit's epochs.

    Args:
        peak_learning_rate: Float > 0 or `None`. The rate at the end of
            the warm-up; `None`: the optimizer's rate when the fit begins.
            Defaults to `None`.
        epochs: Integer >= 1 or `None`. The epochs the schedule spans;
            `None`: the fit's `epochs`. Defaults to `None`.
        warmup: Float in [0, 1). The share of the run spent warming up.
            Defaults to 0.05.
        start_fraction: Float in (0, 1]. The rate at the start, as a
            fraction of the peak. Defaults to 0.1.
        final_fraction: Float in [0, 1]. The rate at the end, as a fraction
            of the peak. Defaults to 0.01.
        updates_per_epoch: Integer >= 1. How often an epoch the rate
            changes. Defaults to 20.
        adaptive_batch_size: An `AdaptiveBatchSize` of the same fit, or
            `None`. The rate is then scaled by its `learning_rate_rule` for
            the batch it has reached over the batch it started with.
            Defaults to `None`.

    Every epoch's logs get `lr`, the rate at its end.

    Example:

    ```python
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=10, callbacks=[WarmupDecay()])  # peaks at 3e-3
    ```
    """

    def __init__(
        self,
        peak_learning_rate=None,
        epochs=None,
        warmup=0.05,
        start_fraction=0.1,
        final_fraction=0.01,
        updates_per_epoch=20,
        adaptive_batch_size=None,
    ):
        super().__init__()
        self.peak_learning_rate = (
            None
            if peak_learning_rate is None
            else check_float(
                "peak_learning_rate", peak_learning_rate, low=0.0, closed=(False, False)
            )
        )
        self.epochs = None if epochs is None else check_int("epochs", epochs, minimum=1)
        self.warmup = check_float("warmup", warmup, low=0.0, high=1.0, closed=(True, False))
        self.start_fraction = check_float(
            "start_fraction", start_fraction, low=0.0, high=1.0, closed=(False, True)
        )
        self.final_fraction = check_float("final_fraction", final_fraction, low=0.0, high=1.0)
        self.updates_per_epoch = check_int("updates_per_epoch", updates_per_epoch, minimum=1)
        if adaptive_batch_size is not None and not isinstance(
            adaptive_batch_size, AdaptiveBatchSize
        ):
            raise TypeError(
                "Invalid value for argument `adaptive_batch_size`. Received: "
                f"adaptive_batch_size of type {type(adaptive_batch_size).__name__}. "
                "Expected a keras_fastrain.callbacks.AdaptiveBatchSize or None."
            )
        self.adaptive_batch_size = adaptive_batch_size
        self._peak = None  # this run's peak (kept across a resume: get_state)

    def learning_rate_at(self, progress, batch_ratio=1.0):
        """The rate at `progress` (0 to 1) of the run, for a batch
        `batch_ratio` times the one the run started with."""
        rate = self._peak * warmup_decay(
            progress, self.warmup, self.start_fraction, self.final_fraction
        )
        rule = getattr(self.adaptive_batch_size, "learning_rate_rule", None)
        if rule == "linear":
            return rate * batch_ratio
        return rate * math.sqrt(batch_ratio) if rule == "sqrt" else rate

    def on_train_begin(self, logs=None):
        if self._peak is None:
            self._peak = self.peak_learning_rate or current_rate(self.model, "WarmupDecay")
        params = self.params or {}
        self._epochs = self.epochs or params.get("epochs") or 1
        self._start_batch = getattr(self.adaptive_batch_size, "batch_size", None)
        self._epoch = 0
        self._rate = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._steps = (self.params or {}).get("steps")  # a growing batch changes it

    def on_train_batch_begin(self, batch, logs=None):
        steps = self._steps or 0
        every = max(1, steps // self.updates_per_epoch)
        if batch % every:
            return
        progress = (self._epoch + (batch / steps if steps else 0.0)) / self._epochs
        ratio = 1.0
        if self._start_batch and self.adaptive_batch_size.batch_size:
            ratio = self.adaptive_batch_size.batch_size / self._start_batch
        rate = self.learning_rate_at(progress, ratio)
        if rate != self._rate:
            change_rate(self.model, rate, momentum_correction=False)
            self._rate = rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(host_array(self.model.optimizer.learning_rate))

    def on_train_end(self, logs=None):
        self._peak = None if self.peak_learning_rate is None else self._peak

    def get_state(self):
        """The run's peak rate (JSON-serializable): a resumed run goes on
        with the same schedule, not one peaking at the decayed rate."""
        return {"peak": self._peak}

    def set_state(self, state):
        """Restores what `get_state` returned."""
        if state.get("peak") is not None:
            self._peak = float(state["peak"])
