"""ImageAugmentation: ImageDataGenerator's arguments as an in-graph Keras layer."""

import math

import keras
import numpy as np
import pytest

import keras_fastrain
from keras_fastrain.augmentation import (
    ImageAugmentation,
    RandomBrightnessScale,
    RandomShearAngle,
    shear_images,
)

pytestmark = pytest.mark.smoke

# The classic recipe's settings (DESIGN.md, "The baseline recipe").
RECIPE = {
    "rotation_range": 20,
    "width_shift_range": 0.2,
    "height_shift_range": 0.2,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


@pytest.fixture(scope="module")
def images():
    (x, _), _ = keras_fastrain.load_fashion_mnist()
    return x[:16, :, :, None].astype("float32")


def built(**kwargs):
    layer = ImageAugmentation(**kwargs)
    layer.build((None, 28, 28, 1))
    return layer


def test_recipe_maps_to_keras_layers_with_the_same_ranges():
    layer = built(**RECIPE)
    kinds = [type(t).__name__ for t in layer.transforms]
    assert kinds == [
        "RandomRotation",
        "RandomTranslation",
        "RandomShearAngle",
        "RandomZoom",
        "RandomFlip",
    ]
    rotation, translation, shear, zoom, flip = layer.transforms
    assert rotation.factor == pytest.approx((-20 / 360, 20 / 360))
    assert (translation.height_lower, translation.height_upper) == pytest.approx((-0.2, 0.2))
    assert (translation.width_lower, translation.width_upper) == pytest.approx((-0.2, 0.2))
    assert shear.shear_range == 0.2
    assert (zoom.height_lower, zoom.height_upper) == pytest.approx((-0.2, 0.2))
    assert (zoom.width_lower, zoom.width_upper) == pytest.approx((-0.2, 0.2))
    assert flip.get_config()["mode"] == "horizontal"
    assert {t.get_config().get("fill_mode", "nearest") for t in layer.transforms[:4]} == {"nearest"}


def test_pixel_shifts_become_fractions_of_the_image():
    translation = built(width_shift_range=7, height_shift_range=14).transforms[0]
    assert (translation.width_lower, translation.width_upper) == pytest.approx((-0.25, 0.25))
    assert (translation.height_lower, translation.height_upper) == pytest.approx((-0.5, 0.5))


def test_zoom_pair_and_brightness_and_channel_shift():
    layer = built(zoom_range=[0.8, 1.5], brightness_range=[0.5, 1.2], channel_shift_range=51)
    zoom, shift, brightness = layer.transforms
    assert (zoom.height_lower, zoom.height_upper) == pytest.approx((-0.2, 0.5))
    assert shift.factor == pytest.approx((-0.2, 0.2))  # 51 / 255
    assert (brightness.lower, brightness.upper) == (0.5, 1.2)


def test_augments_in_training_only(images):
    layer = ImageAugmentation(**RECIPE, seed=3)
    augmented = keras.ops.convert_to_numpy(layer(images, training=True))
    assert augmented.shape == images.shape
    assert np.abs(augmented - images).mean() > 1.0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images)), images)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)


def test_same_seed_same_transforms(images):
    first = keras.ops.convert_to_numpy(ImageAugmentation(**RECIPE, seed=5)(images, training=True))
    again = keras.ops.convert_to_numpy(ImageAugmentation(**RECIPE, seed=5)(images, training=True))
    other = keras.ops.convert_to_numpy(ImageAugmentation(**RECIPE, seed=6)(images, training=True))
    np.testing.assert_allclose(first, again)
    assert np.abs(first - other).mean() > 1.0


def test_brightness_scale_multiplies_within_its_range(images):
    layer = RandomBrightnessScale(0.5, 0.9, seed=1)
    out = keras.ops.convert_to_numpy(layer(images, training=True))
    lit = images > 10
    ratios = out[lit] / images[lit]
    assert ratios.min() >= 0.5 - 1e-5 and ratios.max() <= 0.9 + 1e-5
    per_image = [np.unique(np.round(out[i][lit[i]] / images[i][lit[i]], 4)) for i in range(4)]
    assert all(len(r) == 1 for r in per_image)  # one factor per image


def idg_shear(image, degrees):
    tf = pytest.importorskip("tensorflow")
    generator = tf.keras.preprocessing.image.ImageDataGenerator(fill_mode="constant")
    return generator.apply_transform(image, {"shear": degrees})


def test_shear_matches_image_data_generator(images):
    pytest.importorskip("scipy")
    image = images[0]
    ours = keras.ops.convert_to_numpy(
        shear_images(images[:1], np.array([math.radians(15.0)]), fill_mode="constant")
    )[0]
    theirs = idg_shear(image, 15.0)
    mirrored = idg_shear(image, -15.0)
    error = np.abs(ours - theirs).mean()
    # ImageDataGenerator's center is half a pixel off, so not exact; but far
    # closer than the opposite shear or no shear at all.
    assert error < 0.25 * np.abs(ours - mirrored).mean()
    assert error < 0.25 * np.abs(image - theirs).mean()


def test_shear_layer_is_centered(images):
    # A centered shear keeps the middle row in place (27 rows: row 13).
    odd = images[:1, :27, :27]
    out = keras.ops.convert_to_numpy(
        shear_images(odd, np.array([math.radians(30.0)]), fill_mode="constant")
    )[0]
    np.testing.assert_allclose(out[13], odd[0, 13], atol=1e-3)
    assert np.abs(out[20:] - odd[0, 20:]).max() > 10  # rows far from it move


def test_trains_inside_a_model_and_saves(images, tmp_path):
    (x, y), _ = keras_fastrain.load_fashion_mnist()
    x = x[:512, :, :, None].astype("float32") / 255.0
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            ImageAugmentation(**RECIPE, value_range=(0, 1), seed=0),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y[:512], batch_size=64, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "augmented.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        model.predict(x[:32], verbose=0), loaded.predict(x[:32], verbose=0), atol=1e-6
    )
    assert isinstance(loaded.layers[0], ImageAugmentation)
    assert loaded.layers[0].get_config()["rotation_range"] == 20


def test_rejects_inputs_that_are_not_images():
    with pytest.raises(
        ValueError, match=r"needs batches of images.*Received input shape \(None, 784\)"
    ):
        ImageAugmentation(rotation_range=10).build((None, 784))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fill_mode": "mirror"}, ValueError, r"Received: fill_mode='mirror'.*'constant'"),
        ({"rotation_range": -5}, ValueError, r"`rotation_range`.*Received: rotation_range=-5"),
        ({"shear_range": 90}, ValueError, r"`shear_range`.*Received: shear_range=90"),
        ({"zoom_range": [1.2]}, ValueError, r"`zoom_range`.*Expected a number or a pair"),
        ({"zoom_range": 1.5}, ValueError, r"`zoom_range`.*Received: zoom_range=1\.5"),
        ({"brightness_range": [1.5, 0.5]}, ValueError, r"Received: brightness_range=0\.5"),
        ({"horizontal_flip": "yes"}, TypeError, r"Received: horizontal_flip='yes'"),
        ({"value_range": 255}, ValueError, r"`value_range`.*Expected a pair"),
        ({"seed": -1}, ValueError, r"`seed`.*Received: seed=-1"),
    ],
)
def test_invalid_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        ImageAugmentation(**kwargs)


def test_pixel_shift_needs_a_known_image_size():
    with pytest.raises(ValueError, match=r"`width_shift_range=5` is in pixels"):
        ImageAugmentation(width_shift_range=5).build((None, 28, None, 1))


def test_shear_layer_checks_its_arguments():
    with pytest.raises(ValueError, match=r"`fill_mode`"):
        RandomShearAngle(10, fill_mode="edge")
