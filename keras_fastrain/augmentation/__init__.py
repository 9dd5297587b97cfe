"""ImageDataGenerator's augmentation, as one in-graph Keras 3 layer.

`ImageDataGenerator(...).flow(...)` transforms images one by one, in Python,
on the CPU, and survives only as legacy `tf.keras` code. `ImageAugmentation`
takes the same keyword arguments, with the same meaning, and applies them a
batch at a time inside the compiled train step, on every backend. Like every
Keras random layer it acts only when `training=True`: evaluate, predict and an
exported model see the images unchanged.

As in ImageDataGenerator, all geometric transforms (rotation, shifts, shear,
zoom, flips) are combined into one affine matrix per image and the image is
resampled once (`RandomAffine`, built on `keras.ops.image.affine_transform`).
Chaining Keras's own `RandomRotation`, `RandomTranslation`, `RandomShear`,
`RandomZoom` and `RandomFlip` would resample four times, and measured several
times slower; `RandomShear` also shears about the
corner, which shifts the image. Intensity changes (`channel_shift_range`,
`brightness_range`) are one more layer, `RandomIntensity`.

Differences from ImageDataGenerator: the image center is the true one
(ImageDataGenerator's is half a pixel off); pixel shifts (ranges >= 1) are
drawn continuously rather than as whole pixels; brightness is not rounded to
8 bits; channel shifts are clipped to `value_range` rather than to each
image's own min and max.
"""

from keras_fastrain.augmentation.affine import RandomAffine, affine_matrices
from keras_fastrain.augmentation.image_augmentation import (
    CLASSIC_RECIPE,
    ImageAugmentation,
    as_augmentation_layer,
)
from keras_fastrain.augmentation.intensity import RandomIntensity

__all__ = [
    "CLASSIC_RECIPE",
    "affine_matrices",
    "as_augmentation_layer",
    "ImageAugmentation",
    "RandomAffine",
    "RandomIntensity",
]
