"""`FastModel(ema=...)`: validation scores a moving average of the weights."""

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from tests.helpers import digits_model


def _averaged(ema=0.9, **compile_options):
    keras.utils.set_random_seed(0)
    model = FastModel(digits_model(), ema=ema, verbose=0)
    model.compile(
        keras.optimizers.Adam(3e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **compile_options,
    )
    return model


class _ValidationWeights(keras.callbacks.Callback):
    """Keeps the weights each validation scores (before any swap back)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_test_begin(self, logs=None):
        self.seen.append([keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables])


@pytest.mark.smoke
def test_validation_scores_the_average_and_fit_ends_holding_it(digits):
    (x, y), (x_test, y_test) = digits
    model = _averaged()
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.9
    assert model.choices["ema"].value == 0.9 and model.choices["ema"].changes_results
    seen = _ValidationWeights()
    history = model.fit(
        x, y, epochs=2, validation_data=(x_test, y_test), callbacks=[seen], verbose=0
    )
    averages = [
        keras.ops.convert_to_numpy(v) for v in model.optimizer._model_variables_moving_average
    ]
    # The last validation saw the average, which fit's end left in the model.
    final = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    for validated, average, kept in zip(seen.seen[-1], averages, final, strict=True):
        np.testing.assert_allclose(validated, kept, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(kept, average, rtol=1e-6, atol=1e-7)
    evaluated = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert history.history["val_accuracy"][-1] == pytest.approx(evaluated["accuracy"], abs=1e-6)


def test_a_swap_callback_of_the_users_own_is_not_doubled(digits):
    (x, y), (x_test, y_test) = digits
    model = _averaged()
    own = keras.callbacks.SwapEMAWeights()
    callbacks = [own]
    model.fit(x, y, epochs=1, validation_data=(x_test, y_test), callbacks=callbacks, verbose=0)
    assert callbacks == [own]


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("ema", "error"),
    [(1.0, ValueError), (0.0, ValueError), ("yes", ValueError), ([0.9], TypeError)],
)
def test_a_bad_momentum_names_the_argument(ema, error):
    with pytest.raises(error, match=r"`ema`"):
        FastModel(digits_model(), ema=ema)


@pytest.mark.smoke
def test_true_uses_keras_default_momentum_and_none_leaves_the_optimizer_alone():
    assert _averaged(ema=True).optimizer.ema_momentum == 0.99
    plain = _averaged(ema=None)
    assert not plain.optimizer.use_ema and "ema" not in plain.choices


@pytest.mark.smoke
def test_a_built_optimizer_without_an_average_is_refused():
    model = FastModel(digits_model(), ema=0.9, verbose=0)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    with pytest.raises(ValueError, match="use_ema=True"):
        model.compile(optimizer, "sparse_categorical_crossentropy")


def test_a_model_with_an_average_fits_again_and_searches_its_batch(digits):
    # Keras ends a fit with use_ema by assigning the average to the weights;
    # on JAX both then shared one buffer and the next fit failed ("donate the
    # same buffer twice"), the batch search's short fits first.
    (x, y), (x_test, y_test) = digits
    model = _averaged()
    first = model.fit(x, y, epochs=1, validation_data=(x_test, y_test), verbose=0)
    second = model.fit(
        x, y, batch_size="auto", epochs=1, validation_data=(x_test, y_test), verbose=0
    )
    assert model.batch_size_search is not None
    assert second.history["loss"][0] < first.history["loss"][0]
    evaluated = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert second.history["val_accuracy"][-1] == pytest.approx(evaluated["accuracy"], abs=1e-6)
