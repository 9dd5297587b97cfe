"""`SearchBudget`: a whole KerasTuner search stops after a given time.

Asked for in keras-tuner#249. Two parts, both driven by one clock started
when `search` is called:
- the oracle hands out no trial once the budget is spent (with KerasTuner's
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

import datetime
import time

import keras
import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from keras_fastrain.validation import check_float


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
        if isinstance(max_duration, datetime.timedelta):
            max_duration = max_duration.total_seconds()
        self.max_duration = (
            None
            if max_duration is None
            else check_float("max_duration", max_duration, low=0, closed=(False, True))
        )
        self._start = time.monotonic()

    def remaining(self):
        """Seconds left (`None` without a limit; never below 0)."""
        if self.max_duration is None:
            return None
        return max(0.0, self.max_duration - (time.monotonic() - self._start))

    def spent(self):
        return self.max_duration is not None and self.remaining() <= 0

    def stopper(self):
        """A callback that stops a `fit` once the budget is spent, checked
        after every batch (`None` without a limit). Copies of it (KerasTuner
        deep-copies callbacks for every execution of a trial) keep the same
        deadline."""
        if self.max_duration is None:
            return None
        return BudgetStopper(self)

    def guard(self, oracle):
        """Makes `oracle` hand out no trial once the budget is spent.

        KerasTuner's `Oracle.populate_space` is the documented place where
        an oracle answers `{"status": "STOPPED"}` to end the search; this
        wraps the given oracle's own. An `OracleClient` (a worker of a
        distributed search) is left as it is: its chief decides.
        """
        if not isinstance(oracle, keras_tuner.Oracle) or self.max_duration is None:
            return
        populate_space = oracle.populate_space
        if getattr(populate_space, "budget", None) is not None:  # a search run again
            populate_space = populate_space.unguarded

        def budgeted_populate_space(trial_id):
            if self.spent():
                return {"status": TrialStatus.STOPPED, "values": None}
            return populate_space(trial_id)

        budgeted_populate_space.budget = self
        budgeted_populate_space.unguarded = populate_space
        oracle.populate_space = budgeted_populate_space


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
