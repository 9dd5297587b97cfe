"""KerasTuner integration: the speed knobs as hyperparameters, keras-fastrain
callbacks inside `tuner.search`, the time budget, the time-to-accuracy
objective and per-trial profiles, on real searches over the digits."""

import copy
import json
import os

import keras
import keras_tuner
import pytest

from keras_fastrain import FastModel, FastSequential
from keras_fastrain.callbacks import (
    AdaptiveBatchSize,
    BackupAndRestore,
    BroadcastGlobalVariablesCallback,
    EarlyStopping,
    LearningRateWarmupCallback,
    MetricAverageCallback,
    TimingProfiler,
)
from keras_fastrain.pruning import ConstantSparsity, PruningSummaries, UpdatePruningStep
from keras_fastrain.pruning.callbacks import pruning_wrappers
from keras_fastrain.tuner import (
    BayesianOptimization,
    BudgetedOracle,
    FastHyperModel,
    FastTuner,
    GridSearch,
    Hyperband,
    RandomSearch,
    SearchBudget,
    TimeToAccuracy,
    TimeToTargetLogger,
    speed_report,
    trial_profile,
)
from keras_fastrain.tuner.budget import BudgetStopper
from keras_fastrain.tuner.objective import NOT_REACHED

pytestmark = pytest.mark.smoke
SUBSET = 512


def digit_layers(units=32):
    return [
        keras.Input((8, 8)),
        keras.layers.Flatten(),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]


def build_plain(hp, learning_rate=1e-3):
    model = keras.Sequential(digit_layers(hp.Choice("units", [16, 32])))
    model.compile(
        keras.optimizers.Adam(learning_rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


@pytest.fixture
def data(digits):
    (x, y), (x_test, y_test) = digits
    return x[:SUBSET], y[:SUBSET], (x_test, y_test)


# --- FastHyperModel ---------------------------------------------------------


def test_fast_hypermodel_builds_a_fast_model_with_the_trials_augmentation_and_pruning():
    hypermodel = FastHyperModel(build_plain, augmentation_strengths=(0.5,), final_sparsities=(0.5,))
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert isinstance(model, FastModel)
    assert hp.values["augmentation_strength"] == 0.5 and hp.values["final_sparsity"] == 0.5
    assert [w.pruning_schedule.target_sparsity for w in pruning_wrappers(model)] == [0.5, 0.5]
    assert model.compiled and model.optimizer.get_config()["learning_rate"] == pytest.approx(1e-3)
    assert model.augmentation.get_config()["rotation_range"] == 10  # half the recipe's 20


def test_augmentation_strength_scales_the_ranges_and_zero_turns_it_off():
    from keras_fastrain.tuner.hypermodel import scaled_augmentation

    recipe = {"rotation_range": 20, "zoom_range": (0.8, 1.2), "horizontal_flip": True}
    assert scaled_augmentation(recipe, 0.0) is None
    half = scaled_augmentation(recipe, 0.5)
    assert half["rotation_range"] == 10 and half["horizontal_flip"] is True
    assert half["zoom_range"] == pytest.approx((0.9, 1.1))


def test_fast_hypermodel_builds_under_the_trials_precision_and_restores_the_policy():
    hypermodel = FastHyperModel(build_plain, precisions=("mixed_bfloat16",))
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert model.layers[-1].dtype_policy.name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize(
    "rule, value, factor",
    [("sqrt", "sqrt", 2.0), ("linear", "linear", 4.0), (None, "none", 1.0), ("none", "none", 1.0)],
)
def test_fast_hypermodel_fits_at_the_trials_batch_with_the_scaled_rate(data, rule, value, factor):
    x, y, _ = data
    hypermodel = FastHyperModel(build_plain, batch_sizes=(128,), learning_rate_rules=(rule,))
    assert hypermodel.learning_rate_rules == (None if rule == "none" else rule,)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    steps = []
    count = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: steps.append(1))
    history = hypermodel.fit(hp, model, x, y, epochs=1, verbose=0, callbacks=[count])
    # A KerasTuner Choice cannot hold None: the hyperparameter spells it "none".
    assert hp.values["batch_size"] == 128 and hp.values["learning_rate_rule"] == value
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(
        1e-3 * factor, rel=1e-5
    )
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == SUBSET // 128
    assert len(history.history["loss"]) == 1 and steps == [1]


def test_the_rule_none_is_one_choice_and_keeps_the_rate_of_a_growing_batch(data):
    x, y, _ = data
    hypermodel = FastHyperModel(
        build_plain,
        batch_sizes=(32,),
        adaptive_batch=(True,),
        learning_rate_rules=(None, "none", "sqrt"),
    )
    assert hypermodel.learning_rate_rules == (None, "sqrt")
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    (choice,) = [h for h in hp.space if h.name == "learning_rate_rule"]
    assert choice.values == ["none", "sqrt"]
    hp.values["learning_rate_rule"] = "none"
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, x, y, epochs=3, verbose=0)
    assert history.history["batch_size"] == [32, 64, 128]
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-3)


def test_a_rate_schedule_is_refused_unless_the_rule_is_none(data):
    x, y, _ = data

    def build(hp):
        model = keras.Sequential(digit_layers())
        schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)
        model.compile(keras.optimizers.SGD(schedule), "sparse_categorical_crossentropy")
        return model

    hp = keras_tuner.HyperParameters()
    scaled = FastHyperModel(build, batch_sizes=(128,))
    with pytest.raises(ValueError, match=r"learning_rate_rules=\(None,\)"):
        scaled.fit(hp, scaled.build(hp), x, y, epochs=1, verbose=0)
    kept = FastHyperModel(build, batch_sizes=(128,), learning_rate_rules=(None,))
    hp = keras_tuner.HyperParameters()
    assert "loss" in kept.fit(hp, kept.build(hp), x, y, epochs=1, verbose=0).history


def test_an_adaptive_trial_grows_its_batch_every_epoch(data):
    x, y, _ = data
    hypermodel = FastHyperModel(build_plain, batch_sizes=(32,), adaptive_batch=(True,))
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, x, y, epochs=3, verbose=0)
    assert hp.values["adaptive_batch_size"] is True
    assert history.history["batch_size"] == [32, 64, 128]


def test_fast_hypermodel_rejects_bad_arguments_by_name():
    with pytest.raises(TypeError, match="build_model"):
        FastHyperModel("not a function")
    with pytest.raises(TypeError, match="batch_sizes"):
        FastHyperModel(build_plain, batch_sizes=64)
    with pytest.raises(ValueError, match="batch_sizes"):
        FastHyperModel(build_plain, batch_sizes=(0,))
    with pytest.raises(ValueError, match=r"learning_rate_rules.*cubic.*'sqrt', None"):
        FastHyperModel(build_plain, learning_rate_rules=("cubic",))
    with pytest.raises(ValueError, match="final_sparsities"):
        FastHyperModel(build_plain, final_sparsities=(1.0,))
    with pytest.raises(ValueError, match="precisions"):
        FastHyperModel(build_plain, precisions=("float8",))
    with pytest.raises(TypeError, match="adaptive_batch"):
        FastHyperModel(build_plain, adaptive_batch=("yes",))
    with pytest.raises(ValueError, match="augmentation_strengths"):
        FastHyperModel(build_plain, augmentation_strengths=(1.5,))
    with pytest.raises(TypeError, match="augmentation='flip'"):
        FastHyperModel(build_plain, augmentation="flip")
    with pytest.raises(TypeError, match="monitor=None"):
        TimeToTargetLogger(None, 0.9)


def test_fast_hypermodel_says_what_to_return_from_build_model():
    def fast_build(hp):
        model = FastSequential(digit_layers())
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    with pytest.raises(TypeError, match=r"return a plain keras\.Model"):
        FastHyperModel(fast_build, final_sparsities=(0.5,)).build(keras_tuner.HyperParameters())
    assert isinstance(FastHyperModel(fast_build).build(keras_tuner.HyperParameters()), FastModel)
    uncompiled = FastHyperModel(lambda hp: keras.Sequential(digit_layers()))
    with pytest.raises(ValueError, match="not compiled"):
        uncompiled.build(keras_tuner.HyperParameters())


# --- keras-fastrain callbacks inside a stock KerasTuner search ---------------


class FastDigits(keras_tuner.HyperModel):
    """A user's own HyperModel that builds a (pruned) FastModel."""

    def build(self, hp):
        model = FastSequential(
            digit_layers(hp.Choice("units", [16, 32])), pruning=ConstantSparsity(0.5, begin_step=0)
        )
        model.compile(
            keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        return model


def test_every_callback_runs_in_a_stock_search_with_fresh_state_per_trial(data, tmp_path):
    x, y, validation = data
    stop = EarlyStopping(monitor="val_accuracy", patience=5, max_duration=600)
    callbacks = [
        TimingProfiler(verbose=0, peak_flops=None),
        stop,
        BackupAndRestore(str(tmp_path / "backup"), callbacks=[stop]),
        AdaptiveBatchSize(schedule={1: 2}),
        LearningRateWarmupCallback(initial_lr=1e-3, warmup_epochs=1),
        MetricAverageCallback(),
        BroadcastGlobalVariablesCallback(0),
        UpdatePruningStep(),
        PruningSummaries(log_dir=str(tmp_path / "pruning")) if _has_tensorflow() else None,
    ]
    seen = []  # the batch sizes every trial logged (a function is not deep-copied)
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(logs))
    callbacks = [c for c in callbacks if c is not None] + [record]
    tuner = keras_tuner.GridSearch(
        FastDigits(),
        objective="val_accuracy",
        max_trials=2,
        directory=str(tmp_path),
        project_name="callbacks",
    )
    tuner.search(x, y, validation_data=validation, batch_size=32, epochs=2, callbacks=callbacks)
    assert [t.status for t in tuner.oracle.trials.values()] == ["COMPLETED", "COMPLETED"]
    # Each trial starts from the pristine callbacks: no batch grown twice.
    assert [logs["batch_size"] for logs in seen] == [32, 64, 32, 64]
    assert all("epoch_time" in logs and "sparsity" in " ".join(logs) for logs in seen)
    assert callbacks[3].data is None and callbacks[0]._summary is None  # the user's stay unused
    assert not (tmp_path / "backup").exists()  # each trial's backup gone when it ended
    best = tuner.get_best_models(1)[0]  # the best epoch's weights, loaded back
    score = tuner.oracle.get_best_trials(1)[0].score
    assert best.evaluate(*validation, verbose=0)[1] == pytest.approx(score, abs=1e-6)


def test_best_models_load_back_when_build_model_has_no_input(data, tmp_path):
    x, y, validation = data

    def build_without_input(hp):
        model = keras.Sequential(digit_layers(hp.Choice("units", [16, 32]))[1:])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    tuner = keras_tuner.GridSearch(
        FastHyperModel(build_without_input),
        objective="val_accuracy",
        max_trials=2,
        directory=str(tmp_path),
        project_name="no_input",
    )
    tuner.search(x, y, validation_data=validation, epochs=2, verbose=0)
    best = tuner.get_best_models(1)[0]
    score = tuner.oracle.get_best_trials(1)[0].score
    assert best.evaluate(*validation, verbose=0)[1] == pytest.approx(score, abs=1e-6)


def _has_tensorflow():
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


# --- TimeToAccuracy ---------------------------------------------------------


def test_time_to_target_logger_scores_time_or_the_shortfall():
    logger = TimeToTargetLogger("val_accuracy", 0.9, stop_at_target=False)
    logger.set_model(keras.Sequential(digit_layers()))
    logger.on_train_begin()
    logs = {"val_accuracy": 0.6}
    logger.on_epoch_end(0, logs)
    assert logs["time_to_val_accuracy"] == pytest.approx(NOT_REACHED * 1.3)
    logs = {"val_accuracy": 0.8}
    logger.on_epoch_end(1, logs)
    assert logs["time_to_val_accuracy"] == pytest.approx(NOT_REACHED * 1.1)
    logs = {"val_accuracy": 0.95}
    logger.on_epoch_end(2, logs)
    reached = logs["time_to_val_accuracy"]
    assert 0 < reached < NOT_REACHED and reached == logger.time_to_target
    logs = {"val_accuracy": 0.5}  # a later dip keeps the first time
    logger.on_epoch_end(3, logs)
    assert logs["time_to_val_accuracy"] == reached
    logs = {"loss": 1.0}  # not scored this epoch (validation_freq): the score stays
    logger.on_epoch_end(4, logs)
    assert logs["time_to_val_accuracy"] == reached


def test_time_to_target_logger_skips_broken_values_and_names_a_missing_metric():
    logger = TimeToTargetLogger("val_accuracy", 0.9)
    logger.set_model(keras.Sequential(digit_layers()))
    logger.on_train_begin()
    logs = {"val_accuracy": float("nan")}
    logger.on_epoch_end(0, logs)
    assert logs["time_to_val_accuracy"] == 2 * NOT_REACHED  # nothing scored yet
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(KeyError, match=r"val_accuracy.*\['loss'\]"):
        logger.on_train_end()


def test_time_to_accuracy_infers_the_direction_and_checks_its_arguments():
    assert TimeToAccuracy("val_loss", target=0.3).metric_direction == "min"
    objective = TimeToAccuracy("val_accuracy", target=0.9)
    assert (objective.name, objective.direction) == ("time_to_val_accuracy", "min")
    with pytest.raises(ValueError, match="target"):
        TimeToAccuracy("val_accuracy")
    with pytest.raises(ValueError, match="direction"):
        TimeToAccuracy("val_speed", target=1.0)
    with pytest.raises(TypeError, match="monitor"):
        TimeToAccuracy(3, target=1.0)


def test_a_trial_that_reaches_the_target_ranks_above_one_that_does_not(data, tmp_path):
    x, y, validation = data

    def build(hp):  # SGD at rate 0 never learns
        model = keras.Sequential(digit_layers())
        rate = hp.Choice("learning_rate", [0.0, 0.05])
        model.compile(
            keras.optimizers.SGD(rate), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        return model

    tuner = GridSearch(
        build,
        objective=TimeToAccuracy("val_accuracy", target=0.8),
        max_trials=2,
        directory=str(tmp_path),
        project_name="time_to_accuracy",
    )
    tuner.search(x, y, validation_data=validation, batch_size=32, epochs=20, verbose=0)
    best, worst = tuner.oracle.get_best_trials(2)
    assert best.hyperparameters.values["learning_rate"] == 0.05
    assert best.score < NOT_REACHED <= worst.score
    # Each trial's profile is saved with it: the trial that reached the
    # target stopped there, the other ran on.
    epochs = {
        t.hyperparameters.values["learning_rate"]: len(trial_profile(tuner, t.trial_id)["epochs"])
        for t in (best, worst)
    }
    assert epochs[0.05] < 20 == epochs[0.0]
    rows = speed_report(tuner, print_table=False)
    assert [row["trial_id"] for row in rows] == [best.trial_id, worst.trial_id]
    assert rows[0]["epochs"] == epochs[0.05] and rows[0]["samples_per_sec"] is None


# --- the time budget ----------------------------------------------------------


def test_the_budget_stops_the_running_trial_and_starts_no_other(data, tmp_path):
    x, y, validation = data
    hypermodel = FastHyperModel(build_plain, batch_sizes=(32,))
    tuner = RandomSearch(
        hypermodel,
        objective="val_accuracy",
        max_trials=20,
        max_duration=4,
        directory=str(tmp_path),
        project_name="budget",
    )
    tuner.search(x, y, validation_data=validation, epochs=10_000, verbose=0)
    first = len(tuner.oracle.trials)
    assert 1 <= first < 20 and tuner.oracle.budget is tuner.budget
    # A search run again has its own budget: it starts trials, and stops.
    tuner.search(x, y, validation_data=validation, epochs=10_000, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert first < len(trials) < 20
    assert all(t.status == "COMPLETED" for t in trials)
    last = trials[-1]
    assert 1 <= len(trial_profile(tuner, last.trial_id)["epochs"]) < 10_000
    assert tuner.budget.spent()
    best = tuner.get_best_models(1)[0]  # usable after the budget ran out
    score = tuner.oracle.get_best_trials(1)[0].score
    assert best.evaluate(*validation, verbose=0)[1] == pytest.approx(score, abs=1e-6)
    # A trial KerasTuner would still start (a retry) fails at once, saying why.
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="time budget"):
        tuner.run_trial(last, x, y, epochs=1)
    path = os.path.join(tuner.get_trial_dir(last.trial_id), "timing_profile.json")
    with open(path) as profile:
        assert json.load(profile)["batch_size"] == 32


class FakeClock:
    """`time.monotonic` for the budget: moved by hand, or `step` at every read."""

    def __init__(self, step=0.0):
        self.now, self.step = 1000.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_a_budgeted_oracle_hands_out_no_trial_once_the_budget_is_spent(monkeypatch, tmp_path):
    from keras_fastrain.tuner import budget as budget_module

    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "monotonic", clock)
    tuner = RandomSearch(
        FastHyperModel(build_plain, batch_sizes=(16, 32, 64, 128)),  # 8 points, not 2
        objective="val_accuracy",
        max_trials=10,
        max_duration=60,
        directory=str(tmp_path),
    )
    oracle = tuner.oracle
    assert isinstance(oracle, BudgetedOracle) and oracle.budget is None  # set by search
    assert oracle.create_trial("a").status == "RUNNING"  # no budget: as RandomSearch
    oracle.budget = SearchBudget(60)
    assert oracle.create_trial("b").status == "RUNNING"
    clock.now += 61
    assert oracle.create_trial("c").status == "STOPPED"
    oracle.budget = SearchBudget(60)  # a search run again counts anew
    assert oracle.create_trial("d").status == "RUNNING"
    assert len(oracle.trials) == 3


@pytest.mark.parametrize(
    "ours, theirs, arguments",
    [
        (RandomSearch, keras_tuner.RandomSearch, {"max_trials": 3, "seed": 5}),
        (GridSearch, keras_tuner.GridSearch, {"seed": 5}),
        (BayesianOptimization, keras_tuner.BayesianOptimization, {"alpha": 1e-3, "seed": 5}),
        (Hyperband, keras_tuner.Hyperband, {"max_epochs": 4, "factor": 2, "seed": 5}),
    ],
)
def test_the_stock_tuners_build_their_oracle_as_keras_tuner_does(ours, theirs, arguments, tmp_path):
    def tuner(cls, name):  # positional hypermodel and objective, as KerasTuner's take them
        return cls(build_plain, "val_loss", directory=str(tmp_path), project_name=name, **arguments)

    mine, stock = tuner(ours, "ours").oracle, tuner(theirs, "stock").oracle
    assert isinstance(mine, BudgetedOracle) and isinstance(mine, type(stock))
    assert vars(mine).keys() == vars(stock).keys()
    for name, value in vars(stock).items():
        if isinstance(value, (int, float, str, dict, list, set, keras_tuner.Objective)):
            assert vars(mine)[name] == value or name == "_project_name", name
    assert mine.hyperparameters.values == stock.hyperparameters.values == {"units": 16}


def test_a_tuner_of_your_own_needs_a_budgeted_oracle_for_a_budget(data, tmp_path, monkeypatch):
    from keras_fastrain.tuner import budget as budget_module

    x, y, validation = data

    class MyTuner(FastTuner, keras_tuner.Tuner):
        pass

    class MyOracle(BudgetedOracle, keras_tuner.oracles.RandomSearchOracle):
        pass

    def make(oracle, max_duration, name):
        return MyTuner(
            oracle=oracle,
            hypermodel=FastHyperModel(build_plain),
            max_duration=max_duration,
            directory=str(tmp_path),
            project_name=name,
        )

    plain = keras_tuner.oracles.RandomSearchOracle("val_accuracy", max_trials=1)
    with pytest.raises(TypeError, match=r"RandomSearchOracle.*max_duration=60.*BudgetedOracle"):
        make(plain, 60, "plain")
    assert make(plain, None, "unlimited").oracle is plain
    tuner = make(MyOracle("val_accuracy", max_trials=3), 60, "mine")
    monkeypatch.setattr(budget_module.time, "monotonic", FakeClock(step=61))  # spent at once
    tuner.search(x, y, validation_data=validation, epochs=1, verbose=0)
    assert tuner.oracle.budget is tuner.budget and tuner.oracle.trials == {}

    class MyRandomSearch(FastTuner, keras_tuner.RandomSearch):
        pass

    mixed = MyRandomSearch(
        build_plain, "val_accuracy", max_duration=60, directory=str(tmp_path), project_name="rs"
    )
    assert isinstance(mixed.oracle, BudgetedOracle) and isinstance(mixed, keras_tuner.RandomSearch)


def test_every_tuner_module_declares_its_public_names():
    import importlib

    for name in ("budget", "hypermodel", "objective", "profiles", "tuners", ""):
        module = importlib.import_module("keras_fastrain.tuner" + (f".{name}" if name else ""))
        namespace = {}
        exec(f"from {module.__name__} import *", namespace)
        assert set(namespace) - {"__builtins__"} == set(module.__all__), module.__name__
        assert all(getattr(module, public) is not None for public in module.__all__)
    assert not hasattr(SearchBudget, "guard")  # it monkey-patched the oracle


def test_search_budget_checks_its_argument_and_counts_down():
    with pytest.raises(ValueError, match=r"max_duration.*-1"):
        SearchBudget(-1)
    assert SearchBudget(None).remaining() is None and not SearchBudget(None).spent()
    assert SearchBudget(None).stopper() is None
    budget = SearchBudget(3600)
    assert 3590 < budget.remaining() <= 3600 and not budget.spent()
    stopper = copy.deepcopy(budget.stopper())  # as KerasTuner copies it per execution
    assert stopper.budget.remaining() == pytest.approx(budget.remaining(), abs=1)
    with pytest.raises(TypeError, match="budget"):
        BudgetStopper(600)
    with pytest.raises(ValueError, match="max_duration"):
        RandomSearch(FastHyperModel(build_plain), objective="val_accuracy", max_duration=0)
    with pytest.raises(TypeError, match="profile"):
        RandomSearch(FastHyperModel(build_plain), objective="val_accuracy", profile="yes")


def test_without_keras_tuner_the_import_says_which_extra_to_install(monkeypatch):
    import importlib
    import sys

    for name in [n for n in sys.modules if n.startswith("keras_fastrain.tuner")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "keras_tuner", None)  # as if not installed
    with pytest.raises(ImportError, match=r"keras-fastrain\[tuner\]"):
        importlib.import_module("keras_fastrain.tuner")


def test_a_custom_loss_and_the_users_optimizer_settings_carry_over(data):
    x, y, _ = data

    def my_loss(y_true, y_pred):  # a plain function Keras cannot deserialize
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    def build(hp):
        model = keras.Sequential(digit_layers())
        model.compile(keras.optimizers.SGD(0.05, momentum=0.5), my_loss, metrics=["accuracy"])
        return model

    hypermodel = FastHyperModel(build, final_sparsities=(0.5,))
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert model.loss is my_loss
    config = model.optimizer.get_config()
    assert (config["learning_rate"], config["momentum"]) == pytest.approx((0.05, 0.5))
    history = hypermodel.fit(hp, model, x, y, epochs=1, verbose=0)
    assert "accuracy" in history.history


def test_a_one_epoch_adaptive_trial_trains_without_growth_and_a_continued_one_resumes(data):
    x, y, _ = data
    hypermodel = FastHyperModel(build_plain, batch_sizes=(32,), adaptive_batch=(True,))
    hp = keras_tuner.HyperParameters()
    history = hypermodel.fit(hp, hypermodel.build(hp), x, y, epochs=1, verbose=0)
    assert "batch_size" not in history.history  # nothing to grow in one epoch
    model = hypermodel.build(hp)  # a trial continued from epoch 2 (as Hyperband does)
    history = hypermodel.fit(hp, model, x, y, epochs=4, initial_epoch=2, verbose=0)
    assert history.history["batch_size"] == [128, 256]
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(
        1e-3 * 8**0.5,
        rel=1e-5,  # 32 -> 256 by the sqrt rule
    )


def test_the_fit_knobs_are_declared_before_the_first_trial_and_need_arrays(data):
    x, y, _ = data
    hypermodel = FastHyperModel(
        build_plain,
        batch_sizes=(32, 64),
        adaptive_batch=(False, True),
        learning_rate_rules=("sqrt",),
    )
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    assert {"batch_size", "adaptive_batch_size", "learning_rate_rule"} <= set(hp.values)
    model = hypermodel.build(hp)
    batches = keras.utils.PyDataset.__new__(keras.utils.PyDataset)
    with pytest.raises(TypeError, match="array inputs"):
        hypermodel.fit(hp, model, batches, epochs=1)
    plain = FastHyperModel(build_plain, learning_rate_rules=("linear",))
    with pytest.raises(TypeError, match="batch_size='auto'"):
        plain.fit(hp, model, x, y, batch_size="auto", epochs=1)


def test_time_to_accuracy_is_refused_with_hyperband_and_found_in_a_list(tmp_path):
    objective = TimeToAccuracy("val_accuracy", target=0.9)
    with pytest.raises(ValueError, match="Hyperband"):
        Hyperband(
            FastHyperModel(build_plain), objective=objective, max_epochs=3, directory=str(tmp_path)
        )
    from keras_fastrain.tuner.tuners import _time_objectives

    tuner = RandomSearch(
        FastHyperModel(build_plain), objective=[objective, "val_loss"], directory=str(tmp_path)
    )
    assert _time_objectives(tuner.oracle.objective) == [objective]  # a MultiObjective
    with pytest.raises(ValueError, match="num_trials"):
        speed_report(tuner, num_trials=0)
