"""`SearchBudget`: a whole KerasTuner search stops after a given time.

Asked for in keras-tuner#249. Two parts, both driven by one clock started
when `search` is called:
- the oracle hands out no trial once the budget is spent (with KerasTuner's
  chief/worker mode, the chief's oracle answers every worker, so all stop);
- the trial running at that moment is stopped at the budget by
  `keras_fastrain.callbacks.EarlyStopping(max_duration=...)` (checked after
  every batch), then ends and is recorded as any trial is: its epochs so far
  count, and the best trial so far stays usable.
"""

import datetime
import time

import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from keras_fastrain.callbacks.early_stopping import EarlyStopping
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
        """A callback that stops a trial's `fit` when the budget runs out
        (`None` without a limit)."""
        if self.max_duration is None:
            return None
        # Only the clock decides: no patience, no finiteness check.
        return EarlyStopping(
            monitor="loss",
            mode="min",
            patience=2**31 - 1,
            check_finite=False,
            max_duration=max(self.remaining(), 1e-3),
        )

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
