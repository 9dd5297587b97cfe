"""What the augmentation layers share: the image layer base, and the checks
of the ranges they take, with ImageDataGenerator's meaning."""

import keras

from keras_fastrain.validation import check_float

__all__ = [
    "FILL_MODES",
    "ImageLayer",
    "as_fraction",
    "check_geometry",
    "range_pair",
    "value_range_pair",
]

FILL_MODES = ("constant", "nearest", "reflect", "wrap")


def range_pair(name, value, center):
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


class ImageLayer(keras.layers.Layer):
    """Shape-preserving image layer whose config is the attributes in `CONFIG`."""

    CONFIG = ()

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **{name: getattr(self, name) for name in self.CONFIG}}


def check_geometry(rotation_range, width_shift_range, height_shift_range, shear_range):
    """Checks the ranges ImageAugmentation and RandomAffine share."""
    return (
        check_float("rotation_range", rotation_range, low=0, high=180),
        check_float("width_shift_range", width_shift_range, low=0),
        check_float("height_shift_range", height_shift_range, low=0),
        check_float("shear_range", shear_range, low=0, high=90, closed=(True, False)),
    )


def value_range_pair(value_range):
    if not isinstance(value_range, (list, tuple)) or len(value_range) != 2:
        raise ValueError(
            "Invalid value for argument `value_range`. "
            f"Received: value_range={value_range!r}. Expected a pair (low, high)."
        )
    low = check_float("value_range", value_range[0])
    return low, check_float("value_range", value_range[1], low=low, closed=(False, True))


def as_fraction(name, value, size):
    if value < 1:
        return value
    if size is None:
        raise ValueError(
            f"`{name}={value:g}` is in pixels, which needs the image size; the "
            "input's spatial size is unknown. Give it, or a fraction below 1."
        )
    return value / size
