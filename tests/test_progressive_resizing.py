"""Progressive resizing: smaller images early in a fit, full size at the end."""

import keras
import numpy as np
import pytest

from keras_fastrain import FastModel
from keras_fastrain.callbacks import ProgressiveResizing, SelectiveBackprop
from keras_fastrain.callbacks.progressive_resizing import resized_side
from keras_fastrain.callbacks.step_variants import FitProgress


def _pooled_model():
    """A seeded conv net for 8x8 digit images that takes any image size."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    return model


def _images(digits, count):
    (x, y), _ = digits
    return x[:count, :, :, None].astype("float32") / 16.0, y[:count]


def _weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]


def _assert_same(a, b):
    for left, right in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-6)


@pytest.mark.smoke
def test_a_small_step_is_kerass_step_on_resized_images(digits):
    x, y = _images(digits, 64)
    resizing = _pooled_model()
    callback = ProgressiveResizing(initial_scale=0.5, delay_fraction=0.9, finetune_fraction=0.0)
    resizing.fit(x, y, batch_size=64, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    small = keras.ops.convert_to_numpy(keras.ops.image.resize(x, (4, 4)))
    by_hand = _pooled_model()
    by_hand.fit(small, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    assert callback.sizes == {(4, 4): 1} and callback.compiled == 1
    _assert_same(resizing, by_hand)
    # Trained at full size instead, the weights differ: the resizing matters.
    full = _pooled_model()
    full.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    assert not np.allclose(_weights(full)[0], _weights(resizing)[0], atol=1e-6)
    # After the fit, Keras's own step trains on the images as given.
    assert "train_step" not in vars(resizing)
    resizing.set_weights(full.get_weights())
    for model in (resizing, full):
        model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    _assert_same(resizing, full)


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_sizes_grow_to_full_size_each_compiled_once(digits, steps_per_execution):
    if keras.backend.backend() == "torch" and steps_per_execution > 1:
        pytest.skip("PyTorch's Keras trainer runs one step per call")
    x, y = _images(digits, 512)
    model = _pooled_model()
    model.compile("sgd", "sparse_categorical_crossentropy", steps_per_execution=steps_per_execution)
    callback = ProgressiveResizing(initial_scale=0.25, delay_fraction=0.25, size_increment=2)
    model.fit(x, y, batch_size=32, epochs=8, callbacks=[callback], verbose=0)
    sizes = list(callback.sizes)  # in the order first trained
    assert sizes[0] == (2, 2) and sizes[-1] == (8, 8)
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes) == 4
    assert sum(callback.sizes.values()) == 8 * 16 // steps_per_execution
    assert callback.compiled == 3  # the smaller sizes; full size is Keras's own step
    # The last 20% of the fit (its last 1.6 epochs) trains at full size.
    assert callback.sizes[(8, 8)] >= int(1.6 * 16 // steps_per_execution)


def test_the_schedule_holds_grows_and_finishes_at_full_scale():
    callback = ProgressiveResizing(initial_scale=0.5, delay_fraction=0.4, finetune_fraction=0.2)
    assert callback.scale_at(0.0) == callback.scale_at(0.39) == 0.5
    assert callback.scale_at(0.6) == pytest.approx(0.75)
    assert callback.scale_at(0.8) == callback.scale_at(1.0) == 1.0
    assert [resized_side(224, s, 4) for s in (0.5, 0.51, 0.75, 1.0)] == [112, 112, 168, 224]
    assert resized_side(28, 0.1, 4) == 4 and resized_side(30, 0.99, 4) == 28
    assert resized_side(5, 0.9, 4) == 4 and resized_side(3, 0.5, 4) == 3


def test_a_model_that_cannot_take_smaller_images_is_refused_before_training(digits):
    x, y = _images(digits, 64)
    keras.utils.set_random_seed(0)
    flat = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    flat.compile("sgd", "sparse_categorical_crossentropy")
    before = _weights(flat)
    with pytest.raises(ValueError, match="ProgressiveResizing trains on images of 4x4"):
        flat.fit(x, y, epochs=1, callbacks=[ProgressiveResizing()], verbose=0)
    for a, b in zip(before, _weights(flat), strict=True):
        np.testing.assert_array_equal(a, b)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.out = keras.layers.Dense(10)

        def call(self, inputs):
            return self.out(self.pool(self.conv(inputs)))

    subclassed = Subclassed()
    subclassed.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="image_size"):
        subclassed.fit(x, y, epochs=1, callbacks=[ProgressiveResizing()], verbose=0)
    # The size is the outermost declared input's, not a wrapped model's.
    keras.utils.set_random_seed(0)
    any_size = keras.Sequential(
        [
            keras.Input((None, None, 1)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    outer = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1.0), any_size])
    outer.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    declared = ProgressiveResizing(size_increment=2)
    outer.fit(x, y, batch_size=32, epochs=5, callbacks=[declared], verbose=0)
    assert set(declared.sizes) == {(4, 4), (6, 6), (8, 8)}
    sized = ProgressiveResizing(image_size=(8, 8), size_increment=2)
    subclassed.fit(x, y, batch_size=32, epochs=5, callbacks=[sized], verbose=0)
    assert set(sized.sizes) == {(4, 4), (6, 6), (8, 8)}


def test_bad_arguments_are_refused_by_name():
    for name, value in [
        ("initial_scale", 0.0),
        ("initial_scale", 1.5),
        ("initial_scale", float("nan")),
        ("delay_fraction", 1.0),
        ("size_increment", 0),
        ("interpolation", "cubic"),
        ("image_size", (8,)),
        ("image_size", (8, 0)),
        ("data_format", "nhwc"),
    ]:
        with pytest.raises((ValueError, TypeError), match=name):
            ProgressiveResizing(**{name: value})
    with pytest.raises(ValueError, match="finetune_fraction"):
        ProgressiveResizing(delay_fraction=0.7, finetune_fraction=0.5)
    ProgressiveResizing(delay_fraction=0.8, finetune_fraction=0.2)  # adds up to 1 exactly
    if keras.backend.backend() != "tensorflow":  # keras.ops.image.resize has "area" there only
        with pytest.raises(ValueError, match="interpolation"):
            ProgressiveResizing(interpolation="area")


def test_two_callbacks_that_swap_the_step_are_refused_when_the_fit_starts(digits):
    x, y = _images(digits, 128)
    model = _pooled_model()
    before = _weights(model)
    both = [ProgressiveResizing(), SelectiveBackprop()]
    with pytest.raises(ValueError, match="SelectiveBackprop and ProgressiveResizing both swap"):
        model.fit(x, y, batch_size=32, epochs=2, callbacks=both, verbose=0)
    for a, b in zip(before, _weights(model), strict=True):  # before any step
        np.testing.assert_array_equal(a, b)


def test_a_fit_that_fails_leaves_nothing_for_the_next_fit(digits):
    x, y = _images(digits, 128)

    class Fails(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("stopped from outside the step")

    model = _pooled_model()
    resizing = ProgressiveResizing(delay_fraction=0.9, finetune_fraction=0.0)
    with pytest.raises(RuntimeError, match="from outside"):
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[resizing, Fails()], verbose=0)
    assert "train_step" in vars(model)  # the resizing step, left by the failed fit
    # The next fit with a step-swapping callback puts it back first: this
    # fit trains at full size from start to end, as Keras's own step does.
    model.set_weights(_pooled_model().get_weights())
    whole = ProgressiveResizing(initial_scale=1.0)
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, callbacks=[whole], verbose=0)
    plain = _pooled_model()
    plain.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    _assert_same(model, plain)
    assert "train_step" not in vars(model)


def test_a_fast_model_fit_puts_back_what_a_failed_fit_left(digits):
    x, y = _images(digits, 128)

    class Fails(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("stopped from outside the step")

    model = FastModel(_pooled_model(), steps_per_execution=1, verbose=0)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    resizing = ProgressiveResizing(delay_fraction=0.9, finetune_fraction=0.0)
    with pytest.raises(RuntimeError, match="from outside"):
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[resizing, Fails()], verbose=0)
    model.set_weights(_pooled_model().get_weights())
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    plain = _pooled_model()
    plain.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    _assert_same(model, plain)


def test_progress_with_data_of_unknown_length_counts_the_first_epochs_steps():
    progress = FitProgress()
    progress.epoch_begin({"epochs": 4, "steps": None}, 0)
    assert [progress.at(batch) for batch in (0, 7)] == [0.0, 0.0]  # steps not known yet
    progress.epoch_begin({"epochs": 4, "steps": None}, 1)
    assert progress.at(4) == pytest.approx((1 + 4 / 8) / 4)  # 8 steps, from the first epoch
    known = FitProgress()
    known.epoch_begin({"epochs": 2, "steps": 10}, 1)
    assert known.at(5) == pytest.approx(0.75)


def test_fast_model_adds_the_callback_and_refuses_a_second_step_swap(digits):
    x, y = _images(digits, 64)
    model = FastModel(_pooled_model(), progressive_resizing=0.5, verbose=0)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    choice = model.choices["progressive_resizing"]
    assert choice.value == 0.5 and choice.changes_results
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, steps_per_epoch=1, verbose=0)
    by_hand = _pooled_model()
    callback = ProgressiveResizing(0.5)
    by_hand.fit(x, y, batch_size=64, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    assert callback.sizes == {(4, 4): 1}
    _assert_same(model, by_hand)
    for value in (0.0, 1.0, "half"):
        with pytest.raises((ValueError, TypeError), match="progressive_resizing"):
            FastModel(_pooled_model(), progressive_resizing=value)
    two = FastModel(_pooled_model(), progressive_resizing=True, selective_backprop=0.5)
    with pytest.raises(ValueError, match="progressive_resizing"):
        two.compile("sgd", "sparse_categorical_crossentropy")


def test_a_model_without_input_is_sized_once_its_first_step_built_it(digits):
    x, y = _images(digits, 128)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    callback = ProgressiveResizing(size_increment=2)
    model.fit(x, y, batch_size=32, epochs=5, callbacks=[callback], verbose=0)
    assert (4, 4) in callback.sizes and (8, 8) in callback.sizes
