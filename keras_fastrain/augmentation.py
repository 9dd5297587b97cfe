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
times slower here (about 9x on JAX); `RandomShear` also shears about the
corner, which shifts the image. Intensity changes (`channel_shift_range`,
`brightness_range`) are one more layer, `RandomIntensity`.

Differences from ImageDataGenerator: the image center is the true one
(ImageDataGenerator's is half a pixel off); pixel shifts (ranges >= 1) are
drawn continuously rather than as whole pixels; brightness is not rounded to
8 bits; channel shifts are clipped to `value_range` rather than to each
image's own min and max.
"""

import math

import keras

from keras_fastrain.validation import check_bool, check_choice, check_float, check_int

__all__ = [
    "affine_matrices",
    "as_augmentation_layer",
    "ImageAugmentation",
    "RandomAffine",
    "RandomIntensity",
]

FILL_MODES = ("constant", "nearest", "reflect", "wrap")
# The augmentation of the classic Keras advice:
# ImageDataGenerator(**CLASSIC_RECIPE).flow(x, y, batch_size=32).
CLASSIC_RECIPE = {
    "rotation_range": 20,
    "width_shift_range": 0.2,
    "height_shift_range": 0.2,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


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


def affine_matrices(
    height, width, rotation, shift_x, shift_y, shear, zoom_x, zoom_y, flip_x, flip_y
):
    """Returns `(batch, 8)` transforms for `keras.ops.image.affine_transform`.

    Each output pixel `p` (x = column, y = row) samples the input at
    `c + A (p - c) + t`: `c` the image center, `A = rotation @ shear @ zoom @
    flip` and `t` the shift, as ImageDataGenerator composes them.

    Args:
        height: Number. Image height in pixels.
        width: Number. Image width in pixels.
        rotation: Tensor `(batch,)`. Radians.
        shift_x: Tensor `(batch,)`. Pixels, along the width.
        shift_y: Tensor `(batch,)`. Pixels, along the height.
        shear: Tensor `(batch,)`. Radians; moves x in proportion to y.
        zoom_x: Tensor `(batch,)`. Above 1 zooms out.
        zoom_y: Tensor `(batch,)`. Above 1 zooms out.
        flip_x: Tensor `(batch,)` of 1 or -1. -1 mirrors left-right.
        flip_y: Tensor `(batch,)` of 1 or -1. -1 mirrors top-bottom.
    """
    ops = keras.ops
    cos_r, sin_r = ops.cos(rotation), ops.sin(rotation)
    # shear @ zoom @ flip = [[sx, -sin(shear) * sy], [0, cos(shear) * sy]]
    sx = zoom_x * flip_x
    sy = zoom_y * flip_y
    m00, m01 = sx, -ops.sin(shear) * sy
    m10, m11 = ops.zeros_like(sx), ops.cos(shear) * sy
    # rotation @ that
    a00 = cos_r * m00 - sin_r * m10
    a01 = cos_r * m01 - sin_r * m11
    a10 = sin_r * m00 + cos_r * m10
    a11 = sin_r * m01 + cos_r * m11
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    b0 = cx - a00 * cx - a01 * cy + shift_x
    b1 = cy - a10 * cx - a11 * cy + shift_y
    zeros = ops.zeros_like(a00)
    return ops.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)


class _ImageLayer(keras.layers.Layer):
    """Shape-preserving image layer whose config is the attributes in `CONFIG`."""

    CONFIG = ()

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **{name: getattr(self, name) for name in self.CONFIG}}


def _check_geometry(rotation_range, width_shift_range, height_shift_range, shear_range):
    """Checks the ranges ImageAugmentation and RandomAffine share."""
    return (
        check_float("rotation_range", rotation_range, low=0, high=180),
        check_float("width_shift_range", width_shift_range, low=0),
        check_float("height_shift_range", height_shift_range, low=0),
        check_float("shear_range", shear_range, low=0, high=90, closed=(True, False)),
    )


@keras.saving.register_keras_serializable(package="keras_fastrain")
class RandomAffine(_ImageLayer):
    """Random rotation, shift, shear, zoom and flips in one resampling.

    Every range means what ImageDataGenerator's argument of the same name
    means; each image draws its own values. Acts only when `training=True`.

    Args:
        rotation_range: Float in [0, 180]. Degrees, drawn from [-r, r].
            Defaults to `0`.
        width_shift_range: Float >= 0. Fraction of the width, drawn from
            [-w, w]. Defaults to `0`.
        height_shift_range: Float >= 0. Fraction of the height. Defaults to `0`.
        shear_range: Float in [0, 90). Degrees, drawn from [-s, s]. Defaults
            to `0`.
        zoom_range: Pair `(lower, upper)` of zoom factors, each axis drawn
            independently; above 1 zooms out. Defaults to `(1, 1)`.
        horizontal_flip: Bool. Mirror left-right half of the images.
            Defaults to `False`.
        vertical_flip: Bool. Mirror top-bottom half of the images. Defaults
            to `False`.
        fill_mode: One of `"constant"`, `"nearest"`, `"reflect"`, `"wrap"`.
            Defaults to `"nearest"`.
        fill_value: Float. Defaults to `0`.
        interpolation: `"bilinear"` or `"nearest"`. Defaults to `"bilinear"`.
        seed: Integer or `None`. Defaults to `None`.
    """

    CONFIG = (
        "rotation_range",
        "width_shift_range",
        "height_shift_range",
        "shear_range",
        "zoom_range",
        "horizontal_flip",
        "vertical_flip",
        "fill_mode",
        "fill_value",
        "interpolation",
        "seed",
    )

    def __init__(
        self,
        rotation_range=0.0,
        width_shift_range=0.0,
        height_shift_range=0.0,
        shear_range=0.0,
        zoom_range=(1.0, 1.0),
        horizontal_flip=False,
        vertical_flip=False,
        fill_mode="nearest",
        fill_value=0.0,
        interpolation="bilinear",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        (
            self.rotation_range,
            self.width_shift_range,
            self.height_shift_range,
            self.shear_range,
        ) = _check_geometry(rotation_range, width_shift_range, height_shift_range, shear_range)
        self.zoom_range = _range_pair("zoom_range", zoom_range, center=1)
        if self.zoom_range[0] <= 0:
            raise ValueError(
                f"Invalid value for argument `zoom_range`. Received: zoom_range={zoom_range!r}. "
                "Expected zoom factors above 0."
            )
        self.horizontal_flip = check_bool("horizontal_flip", horizontal_flip)
        self.vertical_flip = check_bool("vertical_flip", vertical_flip)
        self.fill_mode = check_choice("fill_mode", fill_mode, FILL_MODES)
        self.fill_value = check_float("fill_value", fill_value)
        self.interpolation = check_choice("interpolation", interpolation, ("bilinear", "nearest"))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # TensorFlow's ImageProjectiveTransformV3 has no XLA kernel; Keras
        # reads this flag when it decides jit_compile (and so does FastModel).
        self.supports_jit = keras.backend.backend() != "tensorflow"

    def _uniform(self, batch, low, high):
        return keras.random.uniform(
            (batch,), minval=low, maxval=high, seed=self.seed_generator, dtype="float32"
        )

    def _flip(self, batch, enabled):
        if not enabled:
            return keras.ops.ones((batch,), "float32")
        heads = self._uniform(batch, 0.0, 1.0) < 0.5
        return keras.ops.where(heads, -1.0, 1.0)

    def call(self, images, training=None):
        if not training:
            return images
        shape = keras.ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        rotation = math.radians(self.rotation_range)
        shear = math.radians(self.shear_range)
        transforms = affine_matrices(
            height=float(height) if isinstance(height, int) else keras.ops.cast(height, "float32"),
            width=float(width) if isinstance(width, int) else keras.ops.cast(width, "float32"),
            rotation=self._uniform(batch, -rotation, rotation),
            shift_x=self._uniform(batch, -self.width_shift_range, self.width_shift_range)
            * keras.ops.cast(width, "float32"),
            shift_y=self._uniform(batch, -self.height_shift_range, self.height_shift_range)
            * keras.ops.cast(height, "float32"),
            shear=self._uniform(batch, -shear, shear),
            zoom_x=self._uniform(batch, *self.zoom_range),
            zoom_y=self._uniform(batch, *self.zoom_range),
            flip_x=self._flip(batch, self.horizontal_flip),
            flip_y=self._flip(batch, self.vertical_flip),
        )
        return keras.ops.image.affine_transform(
            images,
            keras.ops.cast(transforms, images.dtype),
            interpolation=self.interpolation,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            data_format="channels_last",
        )


@keras.saving.register_keras_serializable(package="keras_fastrain")
class RandomIntensity(_ImageLayer):
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
            else _range_pair("brightness_range", brightness_range, center=1)
        )
        self.value_range = _value_range(value_range)
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


def _value_range(value_range):
    if not isinstance(value_range, (list, tuple)) or len(value_range) != 2:
        raise ValueError(
            "Invalid value for argument `value_range`. "
            f"Received: value_range={value_range!r}. Expected a pair (low, high)."
        )
    low = check_float("value_range", value_range[0])
    return low, check_float("value_range", value_range[1], low=low, closed=(False, True))


@keras.saving.register_keras_serializable(package="keras_fastrain")
class ImageAugmentation(_ImageLayer):
    """ImageDataGenerator's random transforms as one Keras 3 layer.

    Takes ImageDataGenerator's augmentation arguments with their meaning and
    applies them to batches of images `(batch, height, width, channels)` when
    `training=True`, inside the compiled step (see the module docstring for
    how, and the small differences). Put it first in a model.

    Args:
        rotation_range: Degrees; rotations are drawn from [-r, r].
            Defaults to `0`.
        width_shift_range: Fraction of the width (< 1) or pixels (>= 1).
            Defaults to `0`.
        height_shift_range: Fraction of the height (< 1) or pixels (>= 1).
            Defaults to `0`.
        shear_range: Shear angle in degrees, drawn from [-s, s]. Defaults to `0`.
        zoom_range: Float `z` in [0, 1) (zoom drawn from [1 - z, 1 + z]) or a
            pair `[lower, upper]`. Values above 1 zoom out. Defaults to `0`.
        horizontal_flip: Bool. Defaults to `False`.
        vertical_flip: Bool. Defaults to `False`.
        fill_mode: One of `"constant"`, `"nearest"`, `"reflect"`, `"wrap"`.
            Defaults to `"nearest"` (ImageDataGenerator's default).
        cval: Float. The fill value for `fill_mode="constant"`. Defaults to `0`.
        brightness_range: `None` or a pair `[lower, upper]` of factors.
            Defaults to `None`.
        channel_shift_range: Float; a shift drawn from [-c, c] is added to
            every pixel. Defaults to `0`.
        value_range: Pair. The images' value range, for intensity clipping.
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

    CONFIG = (
        "rotation_range",
        "width_shift_range",
        "height_shift_range",
        "shear_range",
        "zoom_range",
        "horizontal_flip",
        "vertical_flip",
        "fill_mode",
        "cval",
        "brightness_range",
        "channel_shift_range",
        "value_range",
        "seed",
    )

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
        (
            self.rotation_range,
            self.width_shift_range,
            self.height_shift_range,
            self.shear_range,
        ) = _check_geometry(rotation_range, width_shift_range, height_shift_range, shear_range)
        if isinstance(zoom_range, (list, tuple)):
            zoom_range = list(_range_pair("zoom_range", zoom_range, center=1))
        else:
            zoom_range = check_float("zoom_range", zoom_range, low=0, high=1, closed=(True, False))
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
        self.value_range = _value_range(value_range)
        self.seed = None if seed is None else check_int("seed", seed, minimum=0)
        self.transforms = []

    def _zoom_pair(self):
        if isinstance(self.zoom_range, list):
            return tuple(self.zoom_range)
        return (1 - self.zoom_range, 1 + self.zoom_range)

    def build(self, input_shape):
        if len(input_shape) not in (3, 4):
            raise ValueError(
                "ImageAugmentation needs batches of images shaped (batch, height, "
                "width, channels), or (batch, height, width) for one channel. "
                f"Received input shape {tuple(input_shape)}; reshape flat inputs to "
                "images first (e.g. keras.layers.Reshape((28, 28, 1)))."
            )
        if len(input_shape) == 3:
            input_shape = (*input_shape, 1)
        height, width = input_shape[1], input_shape[2]
        seed = self.seed
        transforms = []
        geometric = (
            self.rotation_range
            or self.width_shift_range
            or self.height_shift_range
            or self.shear_range
            or self._zoom_pair() != (1, 1)
            or self.horizontal_flip
            or self.vertical_flip
        )
        if geometric:
            transforms.append(
                RandomAffine(
                    rotation_range=self.rotation_range,
                    width_shift_range=_as_fraction(
                        "width_shift_range", self.width_shift_range, width
                    ),
                    height_shift_range=_as_fraction(
                        "height_shift_range", self.height_shift_range, height
                    ),
                    shear_range=self.shear_range,
                    zoom_range=self._zoom_pair(),
                    horizontal_flip=self.horizontal_flip,
                    vertical_flip=self.vertical_flip,
                    fill_mode=self.fill_mode,
                    fill_value=self.cval,
                    seed=seed,
                )
            )
        if self.channel_shift_range or self.brightness_range is not None:
            transforms.append(
                RandomIntensity(
                    self.channel_shift_range,
                    self.brightness_range,
                    self.value_range,
                    seed=None if seed is None else seed + 1,
                )
            )
        self.transforms = transforms
        for layer in transforms:
            layer.build(input_shape)

    def call(self, images, training=None):
        grayscale = len(images.shape) == 3
        if grayscale:
            images = keras.ops.expand_dims(images, -1)
        for layer in self.transforms:
            images = layer(images, training=training)
        return keras.ops.squeeze(images, -1) if grayscale else images


def as_augmentation_layer(augmentation):
    """Turns FastModel's `augmentation=` option into one Keras layer.

    Args:
        augmentation: `None` or `"auto"` (no augmentation: it changes what a
            model learns, so it is never switched on unasked), a dict of
            ImageDataGenerator keyword arguments (an `ImageAugmentation`), a
            Keras layer, or a list of Keras layers (applied in order).

    Returns:
        A `keras.layers.Layer`, or `None`.
    """
    if augmentation is None or augmentation == "auto":
        return None
    if isinstance(augmentation, keras.layers.Layer):
        return augmentation
    if isinstance(augmentation, dict):
        unknown = sorted(set(augmentation) - set(ImageAugmentation.CONFIG))
        if unknown:
            raise ValueError(
                f"Invalid value for argument `augmentation`: unknown key(s) {unknown}. "
                f"Expected ImageDataGenerator's augmentation arguments: "
                f"{', '.join(ImageAugmentation.CONFIG)}. Normalization such as `rescale` "
                "or `featurewise_center` belongs in the model (keras.layers.Rescaling, "
                "keras.layers.Normalization)."
            )
        return ImageAugmentation(**augmentation)
    if isinstance(augmentation, (list, tuple)) and all(
        isinstance(layer, keras.layers.Layer) for layer in augmentation
    ):
        return keras.Sequential(list(augmentation), name="augmentation")
    raise TypeError(
        "Invalid value for argument `augmentation`. "
        f"Received: augmentation={augmentation!r}. Expected None, a dict of "
        "ImageDataGenerator arguments, a Keras layer or a list of Keras layers."
    )


def _as_fraction(name, value, size):
    if value < 1:
        return value
    if size is None:
        raise ValueError(
            f"`{name}={value:g}` is in pixels, which needs the image size; the "
            "input's spatial size is unknown. Give it, or a fraction below 1."
        )
    return value / size
