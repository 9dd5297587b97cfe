"""`SearchBudget`: a whole KerasTuner search stops after a given time.

Asked for in keras-tuner#249. Three parts, all driven by one clock started
when `search` is called:
- the oracle hands out no trial once the budget is spent: a
  `BudgetedOracle` answers `populate_space`, KerasTuner's documented place
  for an oracle to end the search, with `"STOPPED"` (with KerasTuner's
  chief/worker mode, the chief's oracle answers every worker, so all stop);
- the trial running at that moment is stopped at the budget by a
  `BudgetStopper` (the check of `keras_fastrain.callbacks.EarlyStopping`'s
  `max_duration`, but against the search's deadline rather than the fit's
  own start, so that every execution of a trial and the time spent building
  models count), then ends and is recorded as any trial is: its epochs so
  far count (Keras still scores the cut epoch), and the best trial so far
  stays usable;
- a trial that KerasTuner would still start after the deadline (a retry of
  a failed one, or one resumed by a reloaded search, which skip
  `populate_space`) fails at once with a message saying so.
"""

import time

import keras
from keras_tuner.engine.trial import TrialStatus

from keras_fastrain.validation import check_duration

__all__ = ["BudgetStopper", "BudgetedOracle", "SearchBudget"]


class SearchBudget:
    """The time left of a search.

    Args:
        max_duration: Number of seconds, `datetime.timedelta`, or `None`
            (no limit).

    Example:

    ```python
    budget = SearchBudget(600)  # the clock starts now
    callbacks = [budget.stopper()]  # stops a fit when the 600 s are spent
    print(budget.remaining(), budget.spent())
    ```
    """

    def __init__(self, max_duration):
        self.max_duration = (
            None if max_duration is None else check_duration("max_duration", max_duration)
        )
        self._start = time.monotonic()

    def remaining(self):
        """Seconds left (`None` without a limit; never below 0)."""
        if self.max_duration is None:
            return None
        return max(0.0, self.max_duration - (time.monotonic() - self._start))

    def spent(self):
        """Whether the time is up (never without a limit)."""
        return self.max_duration is not None and self.remaining() <= 0

    def stopper(self):
        """A callback that stops a `fit` once the budget is spent, checked
        after every batch (`None` without a limit). Copies of it (KerasTuner
        deep-copies callbacks for every execution of a trial) keep the same
        deadline."""
        if self.max_duration is None:
            return None
        return BudgetStopper(self)


class BudgetedOracle:
    """Makes an oracle hand out no trial once its `budget` is spent.

    Mix into a `keras_tuner.Oracle` subclass, before it. The tuners of
    `keras_fastrain.tuner` build their oracle from such a class; a tuner of
    your own (`class MyTuner(FastTuner, keras_tuner.Tuner)`) given
    `max_duration` needs an oracle of one. A `FastTuner` sets `budget` when
    its `search` starts (each search anew); until then, and with a budget
    of `None`, the oracle works as the class it is mixed into.

    It overrides `populate_space`, where KerasTuner lets an oracle end the
    search by answering `{"status": "STOPPED"}`. A trial KerasTuner starts
    without asking it (a retry, or one resumed by a reloaded search) is
    refused by `FastTuner.run_trial` instead.

    Attributes:
        budget: A `SearchBudget` or `None` (no limit).

    Example:

    ```python
    class MyOracle(BudgetedOracle, keras_tuner.oracles.RandomSearchOracle):
        pass

    tuner = MyTuner(hypermodel=hypermodel, oracle=MyOracle("val_accuracy"), max_duration=300)
    ```
    """

    budget = None

    def populate_space(self, trial_id):
        """`{"status": "STOPPED"}` once `budget` is spent, else what the
        oracle class it is mixed into answers."""
        if self.budget is not None and self.budget.spent():
            return {"status": TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)


class BudgetStopper(keras.callbacks.Callback):
    """Stops training when a `SearchBudget` is spent, checked after every
    batch (only a clock read, so Keras keeps dispatching asynchronously).

    Args:
        budget: A `SearchBudget`.

    Example:

    ```python
    budget = SearchBudget(300)
    model.fit(x, y, epochs=100, callbacks=[BudgetStopper(budget)])
    ```
    """

    async_safe = True

    def __init__(self, budget):
        super().__init__()
        if not isinstance(budget, SearchBudget):
            raise TypeError(
                f"Invalid value for argument `budget`. Received: budget={budget!r}. "
                "Expected a SearchBudget."
            )
        self.budget = budget
        self.stopped = False

    def on_train_batch_end(self, batch, logs=None):
        if self.budget.spent():
            self.stopped = True
            self.model.stop_training = True
