"""`RandomAffine`: rotation, shifts, shear, zoom and flips in one resampling."""

import math

import keras

from keras_fastrain.augmentation._common import (
    FILL_MODES,
    ImageLayer,
    check_geometry,
    range_pair,
)
from keras_fastrain.validation import check_bool, check_choice, check_float

__all__ = ["RandomAffine", "affine_matrices"]


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


@keras.saving.register_keras_serializable(package="keras_fastrain")
class RandomAffine(ImageLayer):
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
        ) = check_geometry(rotation_range, width_shift_range, height_shift_range, shear_range)
        self.zoom_range = range_pair("zoom_range", zoom_range, center=1)
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
