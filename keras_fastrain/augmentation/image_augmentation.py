"""`ImageAugmentation`: ImageDataGenerator's arguments as one layer, and
FastModel's `augmentation=` option turned into a layer."""

import keras

from keras_fastrain.augmentation._common import (
    FILL_MODES,
    ImageLayer,
    as_fraction,
    check_geometry,
    range_pair,
    value_range_pair,
)
from keras_fastrain.augmentation.affine import RandomAffine
from keras_fastrain.augmentation.intensity import RandomIntensity
from keras_fastrain.validation import check_bool, check_choice, check_float, check_int

__all__ = ["CLASSIC_RECIPE", "ImageAugmentation", "as_augmentation_layer"]

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


@keras.saving.register_keras_serializable(package="keras_fastrain")
class ImageAugmentation(ImageLayer):
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
        ) = check_geometry(rotation_range, width_shift_range, height_shift_range, shear_range)
        if isinstance(zoom_range, (list, tuple)):
            zoom_range = list(range_pair("zoom_range", zoom_range, center=1))
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
            else list(range_pair("brightness_range", brightness_range, center=1))
        )
        self.channel_shift_range = check_float("channel_shift_range", channel_shift_range, low=0)
        self.value_range = value_range_pair(value_range)
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
                    width_shift_range=as_fraction(
                        "width_shift_range", self.width_shift_range, width
                    ),
                    height_shift_range=as_fraction(
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
