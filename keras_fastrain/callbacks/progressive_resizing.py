"""`ProgressiveResizing`: train on smaller images early, full size at the end.

A convolution's cost grows with the pixels it sees, and early in training a
network learns coarse shapes that a smaller image shows as well. Progressive
resizing (fast.ai's DAWNBench entries; Composer's `ProgressiveResizing`)
trains the first part of a fit on images scaled down by `initial_scale`,
grows them linearly to full size, and trains the last part
(`finetune_fraction`) at full size, so the model ends on the images it will
be evaluated on.

The images are resized inside the compiled step (`keras.ops.image.resize`),
so the input pipeline is unchanged. Sizes are multiples of
`size_increment` pixels, and each size compiles its step once: a fit
compiles at most `(1 - initial_scale) * side / size_increment + 1` extra
steps, not one per call. Validation, `evaluate` and `predict` see full-size
images. The model must take smaller images: convolutions ending in global
pooling do; a `Flatten` followed by `Dense` does not, and is refused when
the fit starts.
"""

import warnings

import keras
from keras import ops

from keras_fastrain.callbacks.step_variants import (
    FitProgress,
    StepVariants,
    innermost_model,
    refuse_jax_nnx,
)
from keras_fastrain.validation import check_choice, check_float, check_int

__all__ = ["ProgressiveResizing", "resized_side"]

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")
# What `keras.ops.image.resize` lacks on some backends (Keras 3.15.1).
MISSING = {"jax": ("area",), "torch": ("area", "lanczos3", "lanczos5")}


class ProgressiveResizing(keras.callbacks.Callback):
    """Trains on images scaled down early in the fit, growing to full size.

    Args:
        initial_scale: Float in (0, 1]. The scale of the images' sides at
            the start. Defaults to 0.5.
        delay_fraction: Float in [0, 1). The share of the fit's epochs
            trained at `initial_scale`. Defaults to 0.5.
        finetune_fraction: Float in [0, 1 - delay_fraction]. The share at
            the end trained at full size. Defaults to 0.2. In between the
            scale grows linearly. The shares are of the `epochs` given to
            `fit`: a fit stopped early (at a target) ends before them.
        size_increment: Integer >= 1. Sides are rounded down to multiples of
            it (and are at least it), so that few sizes are compiled.
            Defaults to 4.
        interpolation: One of `"bilinear"`, `"nearest"`, `"bicubic"`,
            `"area"` (TensorFlow only), `"lanczos3"`, `"lanczos5"` (not on
            torch): `keras.ops.image.resize`'s. Defaults to `"bilinear"`.
        image_size: `None` or a pair of integers `(height, width)`: the
            full size of the images. `None`: read from the model's input
            (give it for a subclassed model, which has none). Defaults to
            `None`.
        data_format: `None`, `"channels_last"` or `"channels_first"`. Where
            the channel axis of the images is. `None`:
            `keras.config.image_data_format()`. Defaults to `None`.

    The model's input must be one batch of images (rank 4), and the model
    must take images smaller than those it was built for. A model without
    an `Input` is sized once its first step has built it (that step trains
    at full size).
    `sizes` counts the compiled calls of the last fit at each
    `(height, width)`, and `compiled` the steps compiled for the smaller
    sizes.

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[ProgressiveResizing(initial_scale=0.5)])
    ```
    """

    def __init__(
        self,
        initial_scale=0.5,
        delay_fraction=0.5,
        finetune_fraction=0.2,
        size_increment=4,
        interpolation="bilinear",
        image_size=None,
        data_format=None,
    ):
        super().__init__()
        self.initial_scale = check_float(
            "initial_scale", initial_scale, low=0.0, high=1.0, closed=(False, True)
        )
        self.delay_fraction = check_float(
            "delay_fraction", delay_fraction, low=0.0, high=1.0, closed=(True, False)
        )
        self.finetune_fraction = check_float(
            "finetune_fraction", finetune_fraction, low=0.0, high=1.0, closed=(True, True)
        )
        if self.delay_fraction + self.finetune_fraction > 1.0 + 1e-9:
            raise ValueError(
                "Invalid value for argument `finetune_fraction`. Received: "
                f"finetune_fraction={finetune_fraction!r} with "
                f"delay_fraction={delay_fraction!r}. Expected the two to add up to at most 1."
            )
        self.size_increment = check_int("size_increment", size_increment, minimum=1)
        self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)
        backend = keras.backend.backend()
        if self.interpolation in MISSING.get(backend, ()):
            raise ValueError(
                "Invalid value for argument `interpolation`. Received: "
                f"interpolation={interpolation!r}, which keras.ops.image.resize lacks on the "
                f"{backend} backend. Expected one of "
                f"{[i for i in INTERPOLATIONS if i not in MISSING[backend]]}."
            )
        self.image_size = None if image_size is None else _check_size(image_size)
        self.data_format = check_choice(
            "data_format", data_format, (None, "channels_last", "channels_first")
        )
        self.sizes = {}
        self.compiled = 0
        self._variants = self._keras_step = None
        self._full = None
        self._progress = FitProgress()

    def scale_at(self, progress):
        """The images' scale at `progress`, the share of the fit done."""
        if progress < self.delay_fraction:
            return self.initial_scale
        ramp = 1.0 - self.finetune_fraction - self.delay_fraction
        if progress >= 1.0 - self.finetune_fraction or ramp <= 0:
            return 1.0
        share = (progress - self.delay_fraction) / ramp
        return self.initial_scale + (1.0 - self.initial_scale) * share

    def size_at(self, progress):
        """The `(height, width)` trained at `progress`."""
        scale = self.scale_at(progress)
        return tuple(resized_side(side, scale, self.size_increment) for side in self._full)

    def on_train_begin(self, logs=None):
        refuse_jax_nnx(self)
        self._full = None  # found once the model is built (TensorFlow builds it in fit)
        if _declared_inputs(self.model) or self.image_size is not None:
            self._find_size()
        if self.params.get("steps") is None and int(self.params.get("epochs") or 1) == 1:
            warnings.warn(
                "ProgressiveResizing: a fit of one epoch over data of unknown length cannot "
                "tell how far it is, so it trains at the initial scale throughout: give "
                "steps_per_epoch, or several epochs.",
                stacklevel=2,
            )
        self.sizes = {}
        self._progress = FitProgress()
        self._variants = StepVariants(self.model, self)
        self._keras_step = self.model.train_step  # after a stale variant is put back

    def on_epoch_begin(self, epoch, logs=None):
        self._progress.epoch_begin(self.params, epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self._full is None:
            if not (self.model.built and self.model.weights):  # its first step builds it,
                self._variants.use(None)  # at full size
                return
            self._find_size()
        size = self.size_at(self._progress.at(batch))
        self.sizes[size] = self.sizes.get(size, 0) + 1
        if size == self._full:
            self._variants.use(None)
        else:
            self._variants.use(size, self._step(size))

    def on_train_end(self, logs=None):
        if self._variants is not None:
            self.compiled = self._variants.compiled
            self._variants.close()
        self._variants = self._keras_step = None

    def _find_size(self):
        """The full image size, and the model checked at the smallest."""
        data_format = self.data_format or keras.config.image_data_format()
        self._full, channels = self._image_shape(data_format)
        self._check_model(self.size_at(0.0), channels, data_format)

    def _image_shape(self, data_format):
        """`((height, width), channels)` of the full images (channels `None`
        when the model does not say)."""
        inputs = _declared_inputs(self.model)
        shape = tuple(inputs[0].shape)[1:] if inputs and len(inputs) == 1 else ()
        size = channels = None
        if len(shape) == 3:
            last = data_format == "channels_last"
            size, channels = (shape[:2], shape[2]) if last else (shape[1:], shape[0])
        if self.image_size is not None:
            return self.image_size, channels
        if size is None or None in size:
            raise ValueError(
                "ProgressiveResizing resizes one batch of images of a known size, and model "
                f"{self.model.name!r} takes "
                f"{f'inputs of shape {shape}' if shape else 'no single known input'}: give "
                "image_size=(height, width), or remove ProgressiveResizing."
            )
        return tuple(size), channels

    def _check_model(self, size, channels, data_format):
        """Refuses a model that cannot take the smallest images."""
        if size == self._full or channels is None:
            return
        shape = (1, *size, channels) if data_format == "channels_last" else (1, channels, *size)
        try:
            self.model(ops.zeros(shape), training=False)
        except Exception as error:
            raise ValueError(
                f"ProgressiveResizing trains on images of {size[0]}x{size[1]} early in the "
                f"fit, and model {self.model.name!r} (built for {self._full[0]}x"
                f"{self._full[1]}) cannot take them: {_first_line(error)}. Use a model whose "
                "convolutions end in global pooling, or remove ProgressiveResizing."
            ) from None

    def _step(self, size):
        """Keras's `train_step` on the batch's images resized to `size`."""
        keras_step = self._keras_step
        interpolation = self.interpolation
        data_format = self.data_format or keras.config.image_data_format()

        def smaller(data):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            if isinstance(x, (list, tuple, dict)) or len(x.shape) != 4:
                raise ValueError(
                    "ProgressiveResizing resizes one batch of images (rank 4), and the data's "
                    f"x is {_describe(x)}: remove ProgressiveResizing for this model."
                )
            resized = ops.image.resize(
                x, size, interpolation=interpolation, data_format=data_format
            )
            return keras.utils.pack_x_y_sample_weight(ops.cast(resized, x.dtype), y, sample_weight)

        if keras.backend.backend() == "jax":

            def step(state, data):
                return keras_step(state, smaller(data))

            return step

        def step(data):
            return keras_step(smaller(data))

        return step


def resized_side(side, scale, increment):
    """An image side scaled by `scale`, rounded down to a multiple of
    `increment` (at least `increment`), and `side` itself at full scale or
    when the rounding would reach it."""
    if scale >= 1.0:
        return side
    scaled = int(side * scale) // increment * increment
    return min(side, max(increment, scaled))


def _declared_inputs(model):
    """The inputs of the outermost model that declares them (a model
    `FastModel` wraps declares them for it), or `None`."""
    while model is not None:
        inputs = getattr(model, "inputs", None)
        if inputs:
            return inputs
        inner = innermost_model(model)
        model = None if inner is model else inner
    return None


def _check_size(size):
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(
            f"Invalid value for argument `image_size`. Received: image_size={size!r}. "
            "Expected None or a pair of integers > 0, (height, width)."
        )
    return tuple(size)


def _describe(x):
    if isinstance(x, (list, tuple, dict)):
        return f"a {type(x).__name__} of inputs"
    return f"of rank {len(x.shape)}"


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if "incompatible" in line or "expected" in line.lower()]
    return (telling or lines or [type(error).__name__])[0][:200]
