"""`FastTuner`: what keras-fastrain adds to any KerasTuner tuner, and the
four stock tuners with it (an import change: `from keras_fastrain.tuner
import RandomSearch`).

The stock tuners' oracles are built from budget-aware subclasses of
KerasTuner's oracle classes (`BudgetedOracle`, see `budget.py`), with the
arguments the stock tuner would give its own.

For every trial it adds, to the callbacks `search` was given:
- the search's time budget (`max_duration`, see `budget.py`);
- a `TimeToTargetLogger` when the objective is `TimeToAccuracy`;
- a `TimingProfiler` (epoch mode, no per-step cost) unless one is given,
  whose summary is saved in the trial's folder (see `profiles.py`).
"""

import copy
import inspect

import keras_tuner

from keras_fastrain.callbacks.timing_profiler import TimingProfiler
from keras_fastrain.tuner.budget import BudgetedOracle, SearchBudget
from keras_fastrain.tuner.objective import TimeToAccuracy
from keras_fastrain.tuner.profiles import profile_path
from keras_fastrain.validation import check_bool

__all__ = ["BayesianOptimization", "FastTuner", "GridSearch", "Hyperband", "RandomSearch"]


class _BudgetedRandomSearchOracle(BudgetedOracle, keras_tuner.oracles.RandomSearchOracle):
    """`RandomSearchOracle` that stops at the search's budget."""


class _BudgetedBayesianOptimizationOracle(
    BudgetedOracle, keras_tuner.oracles.BayesianOptimizationOracle
):
    """`BayesianOptimizationOracle` that stops at the search's budget."""


class _BudgetedHyperbandOracle(BudgetedOracle, keras_tuner.oracles.HyperbandOracle):
    """`HyperbandOracle` that stops at the search's budget."""


class _BudgetedGridSearchOracle(BudgetedOracle, keras_tuner.oracles.GridSearchOracle):
    """`GridSearchOracle` that stops at the search's budget."""


# KerasTuner's stock tuners, each with the budget-aware subclass of the
# oracle class it builds.
_BUDGETED_ORACLES = {
    keras_tuner.RandomSearch: _BudgetedRandomSearchOracle,
    keras_tuner.BayesianOptimization: _BudgetedBayesianOptimizationOracle,
    keras_tuner.Hyperband: _BudgetedHyperbandOracle,
    keras_tuner.GridSearch: _BudgetedGridSearchOracle,
}


class FastTuner:
    """Mix into a `keras_tuner.Tuner` subclass, before it:
    `class MyTuner(FastTuner, keras_tuner.Tuner)`.

    Mixed directly before one of KerasTuner's four stock tuners
    (`class MyTuner(FastTuner, keras_tuner.RandomSearch)`, as this module's
    tuners are), it builds that tuner's oracle from the `BudgetedOracle`
    subclass of the stock oracle class, with the same arguments. Mixed into
    a tuner given an oracle, that oracle's class must mix in
    `BudgetedOracle` when `max_duration` is set.

    Args:
        max_duration: Number of seconds, `datetime.timedelta`, or `None`.
            The whole search's time budget, counted from `search()`: no
            trial starts after it, and the running one stops at it (within
            a batch; Keras still scores that epoch) and is recorded. Each
            process of a distributed search counts from its own `search()`
            (the chief's clock decides when trials stop being handed out).
            Defaults to `None` (no limit).
        profile: Bool. Save each trial's `TimingProfiler` summary in its
            trial folder (a profiler in epoch mode is added when `search`'s
            callbacks hold none; a given one saves there in place of its
            `json_path`; see `speed_report`). Defaults to `True`.
        *args, **kwargs: What the tuner takes.

    Raises:
        TypeError: When `max_duration` is set and the oracle cannot stop
            the search at it (its class does not mix in `BudgetedOracle`).

    Example:

    ```python
    class MyTuner(FastTuner, keras_tuner.Tuner):
        def run_trial(self, trial, *args, **kwargs):
            kwargs["batch_size"] = trial.hyperparameters.Choice("batch_size", [64, 256])
            return super().run_trial(trial, *args, **kwargs)  # budget and profile apply

    class MyOracle(BudgetedOracle, keras_tuner.oracles.RandomSearchOracle):
        pass  # stops handing out trials at the budget

    oracle = MyOracle(objective="val_accuracy", max_trials=20)
    tuner = MyTuner(hypermodel=hypermodel, oracle=oracle, max_duration=300)
    ```
    """

    def __init__(self, *args, max_duration=None, profile=True, **kwargs):
        self.budget = SearchBudget(max_duration)  # validates; restarted by search
        self.max_duration = max_duration
        self.profile = check_bool("profile", profile)
        stock = _next_class(type(self), FastTuner)
        if stock in _BUDGETED_ORACLES:
            self._init_stock_tuner(stock, *args, **kwargs)
        else:
            super().__init__(*args, **kwargs)
        # A worker's oracle is KerasTuner's client of the chief's (not an
        # Oracle): the chief's oracle decides, and was checked in its process.
        if (
            max_duration is not None
            and isinstance(self.oracle, keras_tuner.Oracle)
            and not isinstance(self.oracle, BudgetedOracle)
        ):
            raise TypeError(
                f"Invalid value for argument `oracle`. Received: an oracle of class "
                f"{type(self.oracle).__name__}, which cannot stop the search at "
                f"max_duration={max_duration!r}. Give an oracle whose class mixes in "
                "keras_fastrain.tuner.BudgetedOracle (class MyOracle(BudgetedOracle, "
                f"{type(self.oracle).__name__})), or use a tuner of keras_fastrain.tuner."
            )
        if _time_objectives(self.oracle.objective) and isinstance(
            self.oracle, keras_tuner.oracles.HyperbandOracle
        ):
            raise ValueError(
                "Invalid value for argument `objective`: TimeToAccuracy with Hyperband. "
                "Hyperband continues a trial from its parent's weights, so the trial's time "
                "to the target would leave out the parent's training. Use RandomSearch, "
                "BayesianOptimization or GridSearch for a time-to-accuracy search."
            )

    def _init_stock_tuner(self, stock, *args, **kwargs):
        """What `stock.__init__` does, but with the oracle built from the
        `BudgetedOracle` subclass of its oracle class: a stock tuner's
        arguments are its oracle's (same names and defaults), `hypermodel`,
        and `Tuner`'s `**kwargs`; `seed` is also kept on the tuner, as
        RandomSearch and GridSearch do. Checked on KerasTuner 1.4.8, whose
        four stock `__init__`s do only that; a test compares the oracle built
        here with the stock one, so a KerasTuner that does more fails it."""
        arguments = inspect.signature(stock.__init__).bind(self, *args, **kwargs)
        arguments.apply_defaults()
        arguments = dict(arguments.arguments)
        del arguments["self"]
        hypermodel = arguments.pop("hypermodel")
        tuner_kwargs = arguments.pop("kwargs")
        self.seed = arguments["seed"]
        oracle = _BUDGETED_ORACLES[stock](**arguments)
        super(stock, self).__init__(oracle=oracle, hypermodel=hypermodel, **tuner_kwargs)

    def search(self, *fit_args, **fit_kwargs):
        """Searches, as the tuner does, within `max_duration` (counted anew
        at every call)."""
        self.budget = SearchBudget(self.max_duration)
        if isinstance(self.oracle, BudgetedOracle):  # not a worker's client
            self.oracle.budget = self.budget
        return super().search(*fit_args, **fit_kwargs)

    def run_trial(self, trial, *args, **kwargs):
        if self.budget.spent():  # a retried or resumed trial skips the oracle's check
            raise keras_tuner.errors.FailedTrialError(
                f"Not started: the search's time budget (max_duration={self.max_duration}) "
                "was spent."
            )
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if self.profile:
            if not any(isinstance(c, TimingProfiler) for c in callbacks):
                callbacks.append(TimingProfiler(mode="epoch", peak_flops=None, verbose=0))
            callbacks = [
                _saving_to(c, profile_path(self, trial.trial_id))
                if isinstance(c, TimingProfiler)
                else c
                for c in callbacks
            ]
        callbacks += [objective.logger() for objective in _time_objectives(self.oracle.objective)]
        stopper = self.budget.stopper()
        if stopper is not None:
            callbacks.append(stopper)
        return super().run_trial(trial, *args, callbacks=callbacks, **kwargs)


def _next_class(cls, mixin):
    """The class after `mixin` in `cls`'s method resolution order."""
    mro = cls.__mro__
    return mro[mro.index(mixin) + 1]


def _time_objectives(objective):
    """The `TimeToAccuracy` objectives in `objective` (a list of objectives
    becomes KerasTuner's `MultiObjective`)."""
    parts = getattr(objective, "objectives", [objective])
    return [part for part in parts if isinstance(part, TimeToAccuracy)]


def _saving_to(profiler, path):
    """A copy of `profiler` that saves its summary at `path` (KerasTuner
    deep-copies callbacks for every trial anyway; the user's stays as is)."""
    profiler = copy.deepcopy(profiler)
    profiler.json_path = path
    return profiler


def _tuner_doc(name, example):
    """The docstring of KerasTuner's tuner `name` with FastTuner mixed in."""
    return f"""`keras_tuner.{name}` with a time budget, the `TimeToAccuracy`
    objective and per-trial profiles.

    Args:
        max_duration: Number of seconds, `datetime.timedelta`, or `None`.
            The whole search's time budget (see `FastTuner`). Defaults to
            `None`.
        profile: Bool. Save each trial's `TimingProfiler` summary with the
            trial (see `FastTuner`). Defaults to `True`.
        *args, **kwargs: What `keras_tuner.{name}` takes (hypermodel,
            objective, directory, ...).

    Example:

    ```python
    tuner = {example}
    ```
    """


class RandomSearch(FastTuner, keras_tuner.RandomSearch):
    __doc__ = _tuner_doc(
        "RandomSearch",
        'RandomSearch(hypermodel, objective=TimeToAccuracy("val_accuracy", target=0.9), '
        'max_trials=4, max_duration=120, directory="/tmp/kf-tuning", overwrite=True)\n'
        "    tuner.search(x, y, validation_data=(x_val, y_val), epochs=5)",
    )


class BayesianOptimization(FastTuner, keras_tuner.BayesianOptimization):
    __doc__ = _tuner_doc(
        "BayesianOptimization",
        'BayesianOptimization(hypermodel, objective="val_accuracy", max_trials=10, '
        "max_duration=600)",
    )


class Hyperband(FastTuner, keras_tuner.Hyperband):
    __doc__ = _tuner_doc(
        "Hyperband",
        'Hyperband(hypermodel, objective="val_accuracy", max_epochs=9, max_duration=600)',
    )


class GridSearch(FastTuner, keras_tuner.GridSearch):
    __doc__ = _tuner_doc(
        "GridSearch",
        "GridSearch(FastHyperModel(build_model, batch_sizes=(64, 256, 1024)), "
        'objective=TimeToAccuracy("val_accuracy", target=0.9), max_duration=600)',
    )
