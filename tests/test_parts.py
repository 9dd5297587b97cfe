"""The parts interface: a user's own part, constraints between parts, and
the decisions parts hand to callbacks, on the session's backend."""

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from keras_fastrain.batching import BatchSizeFinder
from keras_fastrain.callbacks import TimingProfiler
from keras_fastrain.parts import Constraint, Part, builtin_parts

pytestmark = pytest.mark.smoke


class _Count(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


@keras.saving.register_keras_serializable(package="keras_fastrain_tests")
class NoXlaAndCount(Part):
    """A user's part: no XLA with it, and a callback in every fit."""

    name = "no_xla_and_count"

    def __init__(self, reason="the test says so"):
        self.reason = reason
        self.counters = []

    def constraints(self, plan):
        return (Constraint("jit_compile", False, self.reason, self.name),)

    def on_run(self, plan):
        if plan.method == "fit":
            counter = _Count()
            self.counters.append(counter)
            plan.callbacks.append(counter)

    def get_config(self):
        return {"reason": self.reason}


class _WantsXla(Part):
    name = "wants_xla"

    def constraints(self, plan):
        return (Constraint("jit_compile", True, "it needs XLA", self.name),)


def _model(**options):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    model = FastModel(inputs, keras.layers.Dense(10)(hidden), verbose=0, **options)
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=1,
    )
    return model


def test_a_users_part_constrains_a_choice_and_adds_a_callback(digits):
    (x, y), _ = digits
    part = NoXlaAndCount()
    model = _model(parts=[part])
    assert model.parts[-1] is part
    assert [type(p) for p in model.parts[:-1]] == [type(p) for p in builtin_parts()]
    choice = model.choices["jit_compile"]
    assert choice.value is False and model.jit_compile is False
    assert choice.reason == "the test says so"
    callbacks = []
    model.fit(x[:256], y[:256], batch_size=64, epochs=2, verbose=0, callbacks=callbacks)
    assert part.counters[0].epochs == 2
    assert callbacks == []  # the user's list is not changed


def test_a_users_given_option_wins_over_a_constraint():
    model = _model(parts=[NoXlaAndCount()], jit_compile=True)
    assert model.choices["jit_compile"].value is True
    assert model.choices["jit_compile"].reason == "given"


def test_parts_that_disagree_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"no_xla_and_count needs False.*wants_xla needs True"):
        _model(parts=[NoXlaAndCount(), _WantsXla()])


@pytest.mark.parametrize("parts", [["a string"], [NoXlaAndCount], [keras.layers.Dense(2)]])
def test_parts_must_be_part_instances(parts):
    with pytest.raises(TypeError, match="Invalid value for argument `parts`"):
        inputs = keras.Input((2,))
        FastModel(inputs, keras.layers.Dense(1)(inputs), parts=parts)


def test_a_saved_model_loads_back_with_its_own_parts(tmp_path, digits):
    (x, y), _ = digits
    model = _model(parts=[NoXlaAndCount("saved reason")])
    model.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    own = loaded.parts[-1]
    assert isinstance(own, NoXlaAndCount) and own.reason == "saved reason"
    assert loaded.choices["jit_compile"].reason == "saved reason"
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0))


def test_the_batch_the_search_chose_reaches_the_profiler(digits):
    (x, y), _ = digits
    model = _model()
    profiler = TimingProfiler(mode="epoch", peak_flops=None, verbose=0)
    finder = BatchSizeFinder(max_trials=3, steps_per_trial=2)
    model.fit(x, y, batch_size=finder, epochs=1, verbose=0, callbacks=[profiler])
    chosen = model.choices["batch_size"].value
    assert profiler.summary()["batch_size"] == chosen
    assert profiler.summary()["steady_state"]["samples_per_sec"] is not None
