"""`RandomIntensity`: ImageDataGenerator's channel shift and brightness."""

import keras

from keras_fastrain.augmentation._common import ImageLayer, range_pair, value_range_pair
from keras_fastrain.validation import check_float

__all__ = ["RandomIntensity"]


@keras.saving.register_keras_serializable(package="keras_fastrain")
class RandomIntensity(ImageLayer):
    """ImageDataGenerator's `channel_shift_range` and `brightness_range`.

    Each image gets `x + shift` with `shift` drawn from [-shift_range,
    shift_range] (the same for every channel), then `x * factor` with `factor`
    drawn from `brightness_range`, clipped to `value_range`. Acts only when
    `training=True`.

    Args:
        shift_range: Float >= 0, in pixel units. Defaults to `0`.
        brightness_range: `None` or a pair `(lower, upper)` of factors.
            Defaults to `None`.
        value_range: Pair. The images' value range. Defaults to `(0, 255)`.
        seed: Integer or `None`. Defaults to `None`.
    """

    CONFIG = ("shift_range", "brightness_range", "value_range", "seed")

    def __init__(
        self, shift_range=0.0, brightness_range=None, value_range=(0, 255), seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.shift_range = check_float("channel_shift_range", shift_range, low=0)
        self.brightness_range = (
            None
            if brightness_range is None
            else range_pair("brightness_range", brightness_range, center=1)
        )
        self.value_range = value_range_pair(value_range)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        shape = (keras.ops.shape(images)[0], 1, 1, 1)
        if self.shift_range:
            images = images + keras.random.uniform(
                shape, -self.shift_range, self.shift_range, images.dtype, self.seed_generator
            )
        if self.brightness_range is not None:
            images = images * keras.random.uniform(
                shape, *self.brightness_range, images.dtype, self.seed_generator
            )
        return keras.ops.clip(images, *self.value_range)
