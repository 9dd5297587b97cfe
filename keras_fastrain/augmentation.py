"""ImageDataGenerator's augmentation, as one in-graph Keras 3 layer.

`ImageDataGenerator(...).flow(...)` transforms images one by one, in Python,
on the CPU, and survives only as legacy `tf.keras` code. `ImageAugmentation`
takes the same keyword arguments and applies the same random transforms with
Keras 3 preprocessing layers, a batch at a time, inside the compiled train
step or a `tf.data` pipeline, on every backend. Like every Keras random layer
it acts only when `training=True`: evaluate, predict and an exported model see
the images unchanged.

How each argument maps (differences from ImageDataGenerator in brackets):

- `rotation_range=r` (degrees): `RandomRotation(factor=r / 360)`.
- `width_shift_range=w`, `height_shift_range=h` (fractions, or pixels if
  >= 1): `RandomTranslation(h, w)` [pixel ranges become fractions of the image
  size and are drawn continuously, not as whole pixels].
- `shear_range=s` (degrees): `RandomShearAngle(s)`, this module's layer with
  ImageDataGenerator's shear matrix about the image center
  [`keras.layers.RandomShear` shears about the corner, which also shifts the
  image; ImageDataGenerator's center is half a pixel off the true one].
- `zoom_range=z` or `[lo, hi]`: `RandomZoom(height_factor=(lo - 1, hi - 1),
  width_factor=...)`, each axis drawn independently, as ImageDataGenerator
  does; values above 1 zoom out in both.
- `horizontal_flip`, `vertical_flip`: `RandomFlip`.
- `fill_mode`, `cval`: `fill_mode` and `fill_value` of each geometric layer.
- `channel_shift_range=c`: `RandomBrightness(factor=c / value span,
  value_range)`, the same shift added to every channel, clipped to
  `value_range` [ImageDataGenerator clips to the image's own min and max].
- `brightness_range=(lo, hi)`: `RandomBrightnessScale(lo, hi, value_range)`,
  this module's layer: pixel values times a factor in [lo, hi], clipped
  [ImageDataGenerator goes through an 8-bit PIL image, so it also rounds].

One more difference: ImageDataGenerator combines the geometric transforms
into one resampling; here each layer resamples once (the same transforms,
slightly more interpolation).
"""

import math

import keras

from keras_fastrain.validation import check_bool, check_choice, check_float, check_int

FILL_MODES = ("constant", "nearest", "reflect", "wrap")


def _range_pair(name, value, center):
    """Returns (low, high) from a number `v` (center - v, center + v) or a pair."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(
                f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
                "Expected a number or a pair [lower, upper]."
            )
        low = check_float(name, value[0], low=0 if center else None)
        high = check_float(name, value[1], low=low)
        return low, high
    value = check_float(name, value, low=0)
    return center - value, center + value


@keras.saving.register_keras_serializable(package="keras_fastrain")
class RandomBrightnessScale(keras.layers.Layer):
    """Multiplies each image by a random factor in [lower, upper], then clips.

    The meaning of ImageDataGenerator's `brightness_range`. Acts only when
    `training=True`.

    Args:
        lower: Float >= 0. The smallest factor.
        upper: Float >= lower. The largest factor.
        value_range: Pair of numbers. The images' value range, for clipping.
            Defaults to `(0, 255)`.
        seed: Integer or `None`. Defaults to `None`.
    """

    def __init__(self, lower, upper, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.lower, self.upper = _range_pair("brightness_range", [lower, upper], center=1)
        self.value_range = tuple(value_range)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        factors = keras.random.uniform(
            (keras.ops.shape(images)[0], 1, 1, 1),
            minval=self.lower,
            maxval=self.upper,
            seed=self.seed_generator,
            dtype=self.compute_dtype,
        )
        return keras.ops.clip(images * factors, self.value_range[0], self.value_range[1])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "lower": self.lower,
            "upper": self.upper,
            "value_range": self.value_range,
            "seed": self.seed,
        }


def shear_images(images, angles, fill_mode="nearest", fill_value=0.0):
    """Shears each image of a `(batch, height, width, channels)` batch about its center.

    Args:
        images: Tensor of images.
        angles: Tensor `(batch,)` of shear angles in radians.
        fill_mode: One of `FILL_MODES`. Defaults to `"nearest"`.
        fill_value: Float, for `fill_mode="constant"`. Defaults to `0`.
    """
    ops = keras.ops
    angles = ops.cast(angles, "float32")
    sin, cos = ops.sin(angles), ops.cos(angles)
    center_y = (ops.cast(ops.shape(images)[1], "float32") - 1.0) / 2.0
    ones, zeros = ops.ones_like(angles), ops.zeros_like(angles)
    # Output pixel (x, y) samples the input at (x - sin * (y - cy), cy + cos * (y - cy)).
    transform = ops.stack(
        [ones, -sin, sin * center_y, zeros, cos, center_y * (1.0 - cos), zeros, zeros], axis=1
    )
    return ops.image.affine_transform(
        images,
        ops.cast(transform, images.dtype),
        interpolation="bilinear",
        fill_mode=fill_mode,
        fill_value=fill_value,
        data_format="channels_last",
    )


@keras.saving.register_keras_serializable(package="keras_fastrain")
class RandomShearAngle(keras.layers.Layer):
    """Shears each image by a random angle about its center, as ImageDataGenerator.

    For an angle `a` drawn from [-shear_range, shear_range] degrees, the
    horizontal coordinate moves by `-sin(a)` times the distance from the
    center row, and the vertical one is scaled by `cos(a)`: the matrix of
    ImageDataGenerator's `shear_range`. (`keras.layers.RandomShear` shears
    about the top-left corner instead, which also shifts the image.) Acts
    only when `training=True`.

    Args:
        shear_range: Float in [0, 90). Degrees.
        fill_mode: One of `"constant"`, `"nearest"`, `"reflect"`, `"wrap"`.
            Defaults to `"nearest"`.
        fill_value: Float. Defaults to `0`.
        seed: Integer or `None`. Defaults to `None`.
    """

    def __init__(self, shear_range, fill_mode="nearest", fill_value=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.shear_range = check_float(
            "shear_range", shear_range, low=0, high=90, closed=(True, False)
        )
        self.fill_mode = check_choice("fill_mode", fill_mode, FILL_MODES)
        self.fill_value = check_float("fill_value", fill_value)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        limit = math.radians(self.shear_range)
        angles = keras.random.uniform(
            (keras.ops.shape(images)[0],), minval=-limit, maxval=limit, seed=self.seed_generator
        )
        return shear_images(images, angles, self.fill_mode, self.fill_value)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "shear_range": self.shear_range,
            "fill_mode": self.fill_mode,
            "fill_value": self.fill_value,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="keras_fastrain")
class ImageAugmentation(keras.layers.Layer):
    """ImageDataGenerator's random transforms as one Keras 3 layer.

    Takes ImageDataGenerator's augmentation arguments with their meaning (see
    the module docstring for each mapping and its small differences) and
    applies them to batches of images `(batch, height, width, channels)` when
    `training=True`. Put it first in a model, or map it over a `tf.data`
    pipeline.

    Args:
        rotation_range: Degrees; rotations are drawn from [-r, r].
            Defaults to `0`.
        width_shift_range: Fraction of the width (< 1) or pixels (>= 1).
            Defaults to `0`.
        height_shift_range: Fraction of the height (< 1) or pixels (>= 1).
            Defaults to `0`.
        shear_range: Shear angle in degrees, drawn from [-s, s]. Defaults to `0`.
        zoom_range: Float `z` (zoom drawn from [1 - z, 1 + z]) or a pair
            `[lower, upper]`. Values above 1 zoom out. Defaults to `0`.
        horizontal_flip: Bool. Defaults to `False`.
        vertical_flip: Bool. Defaults to `False`.
        fill_mode: One of `"constant"`, `"nearest"`, `"reflect"`, `"wrap"`.
            Defaults to `"nearest"` (ImageDataGenerator's default).
        cval: Float. The fill value for `fill_mode="constant"`. Defaults to `0`.
        brightness_range: `None` or a pair `[lower, upper]` of factors.
            Defaults to `None`.
        channel_shift_range: Float; a shift drawn from [-c, c] is added to
            every pixel. Defaults to `0`.
        value_range: Pair. The images' value range, for brightness clipping.
            Defaults to `(0, 255)`, as ImageDataGenerator's images.
        seed: Integer or `None`. Makes the transforms reproducible. Defaults
            to `None`.

    Example:

    ```python
    augment = keras_fastrain.ImageAugmentation(
        rotation_range=20, width_shift_range=0.2, height_shift_range=0.2,
        shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode="nearest",
    )
    model = keras.Sequential([keras.Input((28, 28, 1)), augment, ...])
    ```
    """

    def __init__(
        self,
        rotation_range=0.0,
        width_shift_range=0.0,
        height_shift_range=0.0,
        shear_range=0.0,
        zoom_range=0.0,
        horizontal_flip=False,
        vertical_flip=False,
        fill_mode="nearest",
        cval=0.0,
        brightness_range=None,
        channel_shift_range=0.0,
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rotation_range = check_float("rotation_range", rotation_range, low=0, high=360)
        self.width_shift_range = check_float("width_shift_range", width_shift_range, low=0)
        self.height_shift_range = check_float("height_shift_range", height_shift_range, low=0)
        self.shear_range = check_float(
            "shear_range", shear_range, low=0, high=90, closed=(True, False)
        )
        if isinstance(zoom_range, (list, tuple)):
            zoom_range = list(_range_pair("zoom_range", zoom_range, center=1))
        else:
            zoom_range = check_float("zoom_range", zoom_range, low=0, high=1)
        self.zoom_range = zoom_range
        self.horizontal_flip = check_bool("horizontal_flip", horizontal_flip)
        self.vertical_flip = check_bool("vertical_flip", vertical_flip)
        self.fill_mode = check_choice("fill_mode", fill_mode, FILL_MODES)
        self.cval = check_float("cval", cval)
        self.brightness_range = (
            None
            if brightness_range is None
            else list(_range_pair("brightness_range", brightness_range, center=1))
        )
        self.channel_shift_range = check_float("channel_shift_range", channel_shift_range, low=0)
        if not isinstance(value_range, (list, tuple)) or len(value_range) != 2:
            raise ValueError(
                "Invalid value for argument `value_range`. "
                f"Received: value_range={value_range!r}. Expected a pair (low, high)."
            )
        self.value_range = (
            check_float("value_range", value_range[0]),
            check_float("value_range", value_range[1], low=value_range[0], closed=(False, True)),
        )
        self.seed = None if seed is None else check_int("seed", seed, minimum=0)
        self.transforms = []

    def _seed(self, index):
        return None if self.seed is None else self.seed + index

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "ImageAugmentation needs batches of images shaped (batch, height, "
                f"width, channels). Received input shape {tuple(input_shape)}; "
                "reshape flat inputs to images first (e.g. keras.layers.Reshape((28, 28, 1)))."
            )
        height, width = input_shape[1], input_shape[2]
        geometry = {"fill_mode": self.fill_mode, "fill_value": self.cval}
        transforms = []
        if self.rotation_range:
            transforms.append(
                keras.layers.RandomRotation(
                    self.rotation_range / 360, seed=self._seed(0), **geometry
                )
            )
        if self.width_shift_range or self.height_shift_range:
            transforms.append(
                keras.layers.RandomTranslation(
                    _as_fraction("height_shift_range", self.height_shift_range, height),
                    _as_fraction("width_shift_range", self.width_shift_range, width),
                    seed=self._seed(1),
                    **geometry,
                )
            )
        if self.shear_range:
            transforms.append(
                RandomShearAngle(self.shear_range, self.fill_mode, self.cval, seed=self._seed(2))
            )
        zoom = self._zoom_factors()
        if zoom is not None:
            transforms.append(keras.layers.RandomZoom(zoom, zoom, seed=self._seed(3), **geometry))
        flip = {
            (True, False): "horizontal",
            (False, True): "vertical",
            (True, True): "horizontal_and_vertical",
        }.get((self.horizontal_flip, self.vertical_flip))
        if flip is not None:
            transforms.append(keras.layers.RandomFlip(flip, seed=self._seed(4)))
        span = self.value_range[1] - self.value_range[0]
        if self.channel_shift_range:
            transforms.append(
                keras.layers.RandomBrightness(
                    min(self.channel_shift_range / span, 1.0),
                    value_range=self.value_range,
                    seed=self._seed(5),
                )
            )
        if self.brightness_range is not None:
            transforms.append(
                RandomBrightnessScale(
                    *self.brightness_range, value_range=self.value_range, seed=self._seed(6)
                )
            )
        self.transforms = transforms
        for layer in transforms:
            layer.build(input_shape)

    def _zoom_factors(self):
        if isinstance(self.zoom_range, list):
            low, high = self.zoom_range
        else:
            low, high = 1 - self.zoom_range, 1 + self.zoom_range
        if low == 1 and high == 1:
            return None
        # Keras: positive factors zoom out, like ImageDataGenerator's values above 1.
        return (low - 1, high - 1)

    def call(self, images, training=None):
        for layer in self.transforms:
            images = layer(images, training=training)
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotation_range": self.rotation_range,
            "width_shift_range": self.width_shift_range,
            "height_shift_range": self.height_shift_range,
            "shear_range": self.shear_range,
            "zoom_range": self.zoom_range,
            "horizontal_flip": self.horizontal_flip,
            "vertical_flip": self.vertical_flip,
            "fill_mode": self.fill_mode,
            "cval": self.cval,
            "brightness_range": self.brightness_range,
            "channel_shift_range": self.channel_shift_range,
            "value_range": self.value_range,
            "seed": self.seed,
        }


def _as_fraction(name, value, size):
    if value < 1:
        return value
    if size is None:
        raise ValueError(
            f"`{name}={value:g}` is in pixels, which needs the image size; the "
            "input's spatial size is unknown. Give it, or a fraction below 1."
        )
    return value / size
