"""`AdaptiveBatchSize`: grow the batch during `fit`, on a schedule or as the
gradient noise and the measured speed allow.

Smith et al. (2018, "Don't Decay the Learning Rate, Increase the Batch
Size") and AdaBatch grow the batch at given epochs: early epochs take many
small, noisy steps; later ones take fewer, larger, faster steps.
McCandlish et al. (2018) say how large a batch still pays: up to the
gradient noise scale `B_noise`, measured here after every epoch on a few
random batches (`keras_fastrain.batching.noise_scale`); the batch doubles
while `B_noise` is at least twice its size. A larger batch only pays if it
trains faster too: by default (`objective="goodput"`, after Pollux, OSDI
2021) a doubling is kept only if, over the epoch it ran, its goodput
(samples per second measured in that epoch, times the statistical
efficiency `1 / (B_noise + B)`) beats the batch before; otherwise the batch
goes back and grows no further. The batch
changes between epochs in a `keras_fastrain.batching.ResizableDataset`;
`fit` is told the new number of steps, so its progress bar and the epoch's
end stay right. The learning rate follows a named rule at every change.

Batch sizes here are global: with workers that each feed their own share
(Horovod, JAX multi-process) every worker's dataset serves
`batch_size / workers`. The schedule depends only on the epoch, and the
noise measurements are averaged over the workers before the decision, so
every worker changes at the same epoch to the same size.
"""

import math
import time

import keras
import numpy as np

from keras_fastrain import _keras_internals, distribute, setup_time
from keras_fastrain.batching.finder import BatchSizeFinder
from keras_fastrain.batching.noise_scale import PROBE_BATCH_SIZE, measure_noise_scale
from keras_fastrain.batching.resizable import ResizableBatches, ResizableDataset
from keras_fastrain.batching.search import goodput_efficiency
from keras_fastrain.devices import host_array
from keras_fastrain.scaling import SCALING_RULES, rate_comes_from_schedule
from keras_fastrain.validation import AUTO, check_bool, check_choice, check_int

__all__ = ["AdaptiveBatchSize"]

NEEDS_RESIZABLE = (
    "AdaptiveBatchSize changes the batch size between epochs, and Keras fixes the "
    "batch size of arrays when fit starts. Train a keras_fastrain.FastModel (it "
    "wraps arrays itself), or wrap them: data = ResizableDataset(x, y, batch_size=64), "
    "then model.fit(data, callbacks=[AdaptiveBatchSize(data, schedule={...})])."
)


class AdaptiveBatchSize(keras.callbacks.Callback):
    """Grows the batch size between epochs and scales the learning rate.

    Args:
        data: The `ResizableDataset` (or `GroupedBatches`) that `fit` trains
            on, or `None` when a `FastModel` trains (it wraps arrays in a
            `ResizableDataset` and a `keras.utils.PyDataset` in a
            `GroupedBatches`, and fills this in).
        schedule: Dict `{epoch: factor}` or `None`: at the start of `epoch`
            (0-based) the batch size is multiplied by the integer
            `factor` >= 1.
        noise_scale: Bool or `"auto"`. After every epoch, measure the
            gradient noise scale on `probes` random batches of the training
            data (of the batch size, and at least 256 samples; one forward
            and backward pass each, outside the compiled step) and double
            the batch while the noise scale is at least twice the batch,
            each doubling checked by `objective`. With `schedule` too, the
            larger batch wins. `"auto"` (default): on when there is no
            `schedule`, so that `AdaptiveBatchSize()` grows by goodput.
        objective: `"goodput"` (default) or `"noise"`. `"goodput"`: a
            doubling the noise scale allows is kept only if the epoch it
            ran trained more per second, statistical efficiency included,
            than the batch before (else the batch goes back, its learning
            rate too, and grows no further). `"noise"`: every doubling the
            noise scale allows is kept (0.1.0's rule).
        probes: Integer >= 1. Batches per noise measurement (per worker).
            More make the estimate steadier. Defaults to 8.
        max_batch_size: Integer, `"auto"` or `None`. The (global) batch
            never grows past it. `"auto"`: the fastest batch is measured
            first (a `BatchSizeFinder` search starting at the fit's batch
            size, kept in `search`) and the batch grows up to it: larger
            batches would train no faster. `FastModel.fit` runs the search
            before training; with a plain `keras.Model`, fed a
            `ResizableDataset`, this callback runs it when the fit begins,
            on the dataset's arrays (its time is part of the fit's). `None`: no bound, or, when
            `FastModel.fit` searched the batch size itself
            (`batch_size="auto"`), the largest batch that search fitted.
        learning_rate_rule: `"linear"`, `"sqrt"` or `None`: at every change
            by a ratio `r` the learning rate is multiplied by `r`,
            `sqrt(r)` or 1 (Smith et al.'s recipe keeps it). Defaults to
            `"sqrt"`.
        verbose: Integer. 1 prints every change.

    Attributes:
        changes: List of `(epoch, batch_size, learning_rate)`, one per
            change, with the global batch size.
        ceiling: Integer or `None`. The batch that `objective="goodput"`
            went back to after a doubling did not pay: growth stops there.
        batch_size: Integer. The global batch size in use.

    Every epoch's logs (so `History`) get `batch_size`, and with
    `noise_scale` on also `noise_scale`, the estimate that decides the
    next epoch's batch (measured while the batch can still double, then
    kept), and `samples_per_second`, the training speed measured in the
    epoch (from the end of its first compiled call).

    Example:

    ```python
    model.fit(x, y, batch_size=64, epochs=8,
              callbacks=[AdaptiveBatchSize(schedule={2: 2, 4: 2, 6: 2})])
    ```
    """

    def __init__(
        self,
        data=None,
        schedule=None,
        noise_scale=AUTO,
        max_batch_size=None,
        learning_rate_rule="sqrt",
        probes=8,
        verbose=0,
        objective="goodput",
    ):
        super().__init__()
        if data is not None and not isinstance(data, ResizableBatches):
            raise TypeError(
                "Invalid value for argument `data`. Received: data of type "
                f"{type(data).__name__}. Expected a keras_fastrain.batching."
                f"ResizableDataset, a GroupedBatches or None. {NEEDS_RESIZABLE}"
            )
        if noise_scale == AUTO and not isinstance(noise_scale, bool):
            noise_scale = schedule is None
        self.noise_scale = check_bool("noise_scale", noise_scale)
        if schedule is None and not self.noise_scale:
            raise ValueError(
                "AdaptiveBatchSize needs a rule to grow by: pass schedule={epoch: factor}, "
                "noise_scale=True (or 'auto'), or both."
            )
        self.objective = check_choice("objective", objective, ("goodput", "noise"))
        if schedule is not None and (not isinstance(schedule, dict) or not schedule):
            raise TypeError(
                f"Invalid value for argument `schedule`. Received: schedule={schedule!r}. "
                "Expected a non-empty dict {epoch: factor}, or None."
            )
        for epoch, factor in (schedule or {}).items():
            check_int("schedule epoch", epoch, minimum=0)
            check_int("schedule factor", factor, minimum=1)
        self.data = data
        self.schedule = dict(schedule or {})
        self.probes = check_int("probes", probes, minimum=1)
        if isinstance(max_batch_size, str) and max_batch_size != AUTO:
            raise ValueError(
                "Invalid value for argument `max_batch_size`. Received: "
                f"max_batch_size={max_batch_size!r}. Expected an integer >= 1, 'auto' or None."
            )
        if max_batch_size not in (None, AUTO):
            max_batch_size = check_int("max_batch_size", max_batch_size, minimum=1)
        self.max_batch_size = max_batch_size
        self.learning_rate_rule = check_choice(
            "learning_rate_rule", learning_rate_rule, SCALING_RULES
        )
        self.verbose = check_int("verbose", verbose, minimum=0)
        self.changes = []
        self._searched_max = None  # see limit_to_search
        self._feeders = 1
        self._noise_scale = None  # the last estimate, in samples
        self._speed = {}  # global batch -> samples/s measured in an epoch
        self._grown_from = None  # the batch before a doubling under trial
        self._revert = False
        self.ceiling = None
        self._calls = []  # (step index, time) of this epoch's compiled calls
        self._restored = None  # a state from set_state, applied when the run begins
        self.search = None  # the max_batch_size="auto" search of a plain fit
        self._running = False
        self._counted_setup = False

    def limit_to_search(self, batch_size):
        """Bounds growth by a batch-size search's result, or by none again
        (`None`), where `max_batch_size` is `"auto"` or `None`.
        `FastModel.fit` calls this for every fit."""
        if batch_size is not None:
            batch_size = check_int("batch_size", batch_size, minimum=1)
        self._searched_max = batch_size

    @property
    def batch_size(self):
        return None if self.data is None else self.data.batch_size * self._feeders

    def on_train_begin(self, logs=None):
        if self.data is None:
            raise TypeError(f"AdaptiveBatchSize has no data to resize. {NEEDS_RESIZABLE}")
        if (self.params or {}).get("steps") is None:
            # A dataset Keras cannot count (as FastModel's on several TF workers).
            _keras_internals.set_running_fit_steps(self.data.num_batches)
        self._engine = distribute.current()
        self._feeders = 1 if self._engine.feeds_global_batch() else self._engine.size
        self._noise_scale = None
        self._speed, self._grown_from, self._revert, self.ceiling = {}, None, False, None
        self._rng = np.random.default_rng(self._engine.rank)
        self._running = True
        if self.max_batch_size == AUTO and self._searched_max is None:
            self._searched_max = self._search_fastest()
        if self._restored is not None:
            self._apply_state(self._restored)
        if self.learning_rate_rule is not None and rate_comes_from_schedule(self.model.optimizer):
            raise ValueError(
                "AdaptiveBatchSize scales the learning rate, and this optimizer takes "
                "it from a LearningRateSchedule: give the optimizer a fixed rate, or "
                "pass learning_rate_rule=None."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._calls = []
        old = self.batch_size
        if self._revert:  # the last doubling did not pay: back, and no further
            self._revert, self._grown_from = False, None
            self._change(epoch, old, self.ceiling)
            return
        new = scheduled = old * self.schedule.get(epoch, 1)
        limit = self._limit()
        if self._noise_scale is not None:  # may be infinite: no signal left
            while new * 2 <= min(self._noise_scale, limit):
                new *= 2
        step = self.data.multiple_of * self._feeders
        new = max(min(new, limit) // step * step, old)
        self._grown_from = old if new > max(scheduled, old) else None
        self._change(epoch, old, new)

    def _change(self, epoch, old, new):
        """Serves batches of `new` (global) from this epoch, the learning
        rate scaled by the rule."""
        if new == old:
            return
        self.data.batch_size = new // self._feeders
        _keras_internals.set_running_fit_steps(self.data.num_batches)
        rate = self._scale_learning_rate(new / old)
        self.changes.append((epoch, new, rate))
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: batch size {old} -> {new}, learning rate {rate:.3g}.")

    def on_train_batch_end(self, batch, logs=None):
        self._calls.append((batch, time.perf_counter()))

    def _search_fastest(self):
        """`max_batch_size="auto"` under a plain `fit`: the fastest batch
        from the current one up, measured on the dataset's arrays before the
        first step (the search restores the model's weights and optimizer)."""
        if not isinstance(self.data, ResizableDataset):
            raise ValueError(
                "AdaptiveBatchSize(max_batch_size='auto') measures the fastest batch on "
                "arrays: give it (and fit) a keras_fastrain.batching.ResizableDataset, "
                "train a FastModel, or give max_batch_size an integer. Received data of "
                f"type {type(self.data).__name__}."
            )
        data = self.data
        history = getattr(self.model, "history", None)  # the search's fits make their own
        finder = BatchSizeFinder(min_batch_size=self.batch_size, objective="throughput")
        with setup_time.counted(self.model, "batch-size search"):
            self.search = finder.find(
                self.model,
                data.x,
                data.y,
                data.sample_weight,
                multiple_of=data.multiple_of,
                epochs=max(1, (self.params or {}).get("epochs") or 1),
            )
        self.model.history = history
        self._counted_setup = True
        return self.search.batch_size

    def on_train_end(self, logs=None):
        if self._counted_setup:  # a plain fit's search: not the next fit's
            setup_time.clear(self.model)
            self._counted_setup = False
        self._running = False
        self._restored = None

    def get_state(self):
        """The state a resumed run needs, JSON-serializable: the global
        batch size reached, the changes made, and the last noise scale
        (`keras_fastrain.callbacks.BackupAndRestore` saves it with every
        backup; the learning rate is the optimizer's, in the backup)."""
        noise = self._noise_scale
        return {
            "batch_size": self.batch_size,
            "ceiling": self.ceiling,
            "revert": self._revert,
            "speed": {str(b): float(v) for b, v in self._speed.items()},
            "changes": [[int(e), int(b), float(r)] for e, b, r in self.changes],
            "noise_scale": None if noise is None else float(noise),
        }

    def set_state(self, state):
        """Restores what `get_state` returned: the run that begins (or is
        running) continues at the batch size the interrupted one reached."""
        self.changes = [tuple(change) for change in state.get("changes", [])]
        self._restored = dict(state)
        if self._running:  # set_state came after this callback's on_train_begin
            self._apply_state(self._restored)

    def _apply_state(self, state):
        batch = state.get("batch_size")
        if batch and self.data is not None and batch != self.batch_size:
            self.data.batch_size = max(1, int(batch) // self._feeders)
            _keras_internals.set_running_fit_steps(self.data.num_batches)
        if state.get("noise_scale") is not None:
            self._noise_scale = float(state["noise_scale"])
        self.ceiling = state.get("ceiling")
        self._revert = bool(state.get("revert", False))
        self._speed = {int(b): float(v) for b, v in state.get("speed", {}).items()}

    def _limit(self):
        """The largest global batch growth may reach."""
        limit = self._searched_max if self.max_batch_size in (None, AUTO) else self.max_batch_size
        limit = limit or self.data.num_samples * self._feeders  # one batch per epoch
        return limit if self.ceiling is None else min(limit, self.ceiling)

    def on_epoch_end(self, epoch, logs=None):
        speed = self._epoch_speed()
        if speed is not None:
            self._speed[self.batch_size] = speed
        # No measurement once the batch cannot double any more.
        if self.noise_scale and self.batch_size * 2 <= self._limit():
            self._noise_scale = self._measure_noise_scale()
        if self.objective == "goodput" and self._grown_from is not None:
            self._check_doubling()
        if logs is not None:
            logs["batch_size"] = self.batch_size
            if self._noise_scale is not None:
                logs["noise_scale"] = self._noise_scale
            if speed is not None:
                logs["samples_per_second"] = speed

    def _epoch_speed(self):
        """Global samples per second of this epoch's training, from the end
        of its first compiled call (a new batch size may compile first) to
        the end of its last; the workers' mean. `None` with fewer than two
        calls."""
        if len(self._calls) < 2:
            return None
        (first, start), (last, end) = self._calls[0], self._calls[-1]
        speed = (last - first) * self.batch_size / max(end - start, 1e-9)
        if self._engine.size > 1:  # every worker decides alike
            speed = float(self._engine.allreduce(np.float64(speed)))
        return speed

    def _check_doubling(self):
        """Keeps the batch the noise scale grew to only if its goodput beat
        the batch before; else goes back to that one from the next epoch."""
        before, now = self._grown_from, self.batch_size
        self._grown_from = None
        if before not in self._speed or now not in self._speed:
            return
        noise = self._noise_scale if self._noise_scale is not None else math.inf
        efficiency = goodput_efficiency(noise, before)  # 1 at `before`
        if not self._speed[now] * efficiency(now) > self._speed[before]:
            self.ceiling, self._revert = before, True

    def _measure_noise_scale(self):
        """`B_noise` from `probes` random batches of this worker's data,
        the norms averaged over all workers (so all decide alike)."""
        # Probes at least PROBE_BATCH_SIZE samples: a batch far below the
        # noise scale measures mostly noise.
        size = min(self.data.num_samples, max(PROBE_BATCH_SIZE, self.data.batch_size))
        batches = (self.data.sample_batch(size, self._rng) for _ in range(self.probes))
        return measure_noise_scale(self.model, batches, self._engine)

    def _scale_learning_rate(self, ratio):
        optimizer = self.model.optimizer
        rate = float(host_array(optimizer.learning_rate))
        if self.learning_rate_rule is None:
            return rate
        rate *= ratio if self.learning_rate_rule == "linear" else math.sqrt(ratio)
        _keras_internals.sync_jax_state(self.model)
        optimizer.learning_rate = rate
        return rate
