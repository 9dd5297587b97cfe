"""`FastHyperModel`: the speed knobs of training as KerasTuner hyperparameters.

A user's `build_model(hp)` stays what it is (the network, its own
hyperparameters, `compile`); `FastHyperModel` adds the knobs that decide how
fast that network trains, each searched only when given a tuple of values:

- in `build`: precision (the dtype policy the layers are made under), and
  the model made a `FastModel` with an augmentation strength and a pruning
  final sparsity;
- in `fit` (KerasTuner's `HyperModel.fit(hp, model, *args, **kwargs)`):
  the batch size, the learning rate scaled to it by a rule, and whether the
  batch grows while training (`AdaptiveBatchSize`).

The learning-rate rules are `keras_fastrain.scaling`'s, `None` (no scaling)
included. A KerasTuner `Choice` cannot hold `None`, so the hyperparameter
spells it `"none"` (`NO_RULE`); `_rule_value` and `_rule` are the one place
that maps between the two.
"""

import keras
import keras_tuner
import numpy as np

from keras_fastrain import _keras_internals
from keras_fastrain.augmentation import CLASSIC_RECIPE
from keras_fastrain.callbacks.adaptive_batch_size import AdaptiveBatchSize
from keras_fastrain.callbacks.timing_profiler import TimingProfiler
from keras_fastrain.model import FastModel
from keras_fastrain.pruning import ConstantSparsity
from keras_fastrain.scaling import SCALING_RULES, rate_comes_from_schedule, scaled_learning_rate
from keras_fastrain.validation import check_choice, check_float, check_int

__all__ = ["FastHyperModel", "NO_RULE", "PRECISIONS", "scaled_augmentation"]

# The learning-rate rule None as the hyperparameter holds it.
NO_RULE = "none"
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# The hyperparameters' names, as `trial.hyperparameters` shows them.
BATCH_SIZE = "batch_size"
ADAPTIVE = "adaptive_batch_size"
RULE = "learning_rate_rule"
AUGMENTATION = "augmentation_strength"
SPARSITY = "final_sparsity"
PRECISION = "precision"


def _rule_value(rule):
    """The hyperparameter value of learning-rate rule `rule` (a
    `SCALING_RULES` rule, or `NO_RULE` as the hyperparameter spells None)."""
    rule = check_choice("learning_rate_rules", _rule(rule), SCALING_RULES)
    return NO_RULE if rule is None else rule


def _rule(value):
    """The `SCALING_RULES` rule of hyperparameter value `value`."""
    return None if value == NO_RULE else value


def _choices(name, values, check):
    """`values` as a checked tuple, or `None` when the knob is not searched."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise TypeError(
            f"Invalid value for argument `{name}`. Received: {name}={values!r}. "
            "Expected a non-empty tuple of values to search, or None."
        )
    return tuple(check(value) for value in values)


class FastHyperModel(keras_tuner.HyperModel):
    """A `keras_tuner.HyperModel` that searches how fast a network trains.

    Give it the function that builds your (compiled) model from `hp`, and a
    tuple of values for each speed knob to search; a knob left at `None` is
    not searched and stays as your model and `fit` arguments set it.

    Args:
        build_model: Callable `build_model(hp)` returning a compiled
            `keras.Model`. A plain model is made a `keras_fastrain.FastModel`
            (compiled the same way) with the trial's augmentation and
            pruning; a `FastModel` is used as it is (then augmentation and
            pruning cannot be searched).
        batch_sizes: Tuple of integers or `None`. Global batch sizes
            (hyperparameter `"batch_size"`); needs array inputs.
        adaptive_batch: Tuple of bools or `None`, e.g. `(False, True)`.
            `True` grows the batch while training (hyperparameter
            `"adaptive_batch_size"`): it doubles every `grow_every` epochs
            up to `max_batch_size`, the learning rate scaled by the rule.
        learning_rate_rules: Tuple of `keras_fastrain.scaling` rules
            (`"linear"`, `"sqrt"`, or `None` for no scaling), or `None`.
            How the optimizer's rate, tuned for `reference_batch_size`, is
            scaled to the trial's batch (hyperparameter
            `"learning_rate_rule"`, which holds the rule `None` as
            `"none"`: KerasTuner's choices cannot be `None`; `"none"` is
            accepted here too). Left at `None`, the rate is scaled by
            `"sqrt"` when batch sizes are searched, else left alone.
        reference_batch_size: Integer >= 1. The batch your optimizer's
            learning rate was tuned for. Defaults to `32` (Keras's default).
        augmentation_strengths: Tuple of numbers in [0, 1], or `None`. 0 is
            no augmentation, 1 is `augmentation` as given; numeric ranges
            scale in between (hyperparameter `"augmentation_strength"`).
        augmentation: Dict of ImageDataGenerator arguments at strength 1.
            Defaults to the classic recipe
            (`keras_fastrain.augmentation.CLASSIC_RECIPE`).
        final_sparsities: Tuple of numbers in [0, 1), or `None`. The share
            of each prunable layer's weights pruned, from the first step on
            (`ConstantSparsity`; 0 is no pruning; hyperparameter
            `"final_sparsity"`).
        precisions: Tuple of `"float32"`, `"mixed_float16"`,
            `"mixed_bfloat16"`, or `None`. The dtype policy the model is
            built under (hyperparameter `"precision"`).
        max_batch_size: Integer or `None`. The largest batch an adaptive
            batch grows to. Defaults to 8 times the trial's batch.
        grow_every: Integer >= 1. Epochs between doublings of an adaptive
            batch. Defaults to `1`.
        name: Optional name of the hypermodel.

    Example:

    ```python
    import keras_tuner

    def build_model(hp):
        model = keras.Sequential([
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Int("units", 32, 128, step=32), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    hypermodel = FastHyperModel(
        build_model, batch_sizes=(32, 128), adaptive_batch=(False, True)
    )
    ```
    """

    def __init__(
        self,
        build_model,
        batch_sizes=None,
        adaptive_batch=None,
        learning_rate_rules=None,
        reference_batch_size=32,
        augmentation_strengths=None,
        augmentation=None,
        final_sparsities=None,
        precisions=None,
        max_batch_size=None,
        grow_every=1,
        name=None,
    ):
        super().__init__(name=name)
        if not callable(build_model):
            raise TypeError(
                "Invalid value for argument `build_model`. Received: "
                f"build_model={build_model!r}. Expected a callable build_model(hp) "
                "returning a compiled keras.Model."
            )
        self.build_model = build_model
        self.batch_sizes = _choices(
            "batch_sizes", batch_sizes, lambda v: check_int("batch_sizes", v, minimum=1)
        )
        self.adaptive_batch = _choices("adaptive_batch", adaptive_batch, _check_flag)
        rules = _choices("learning_rate_rules", learning_rate_rules, _rule_value)
        # As scaling spells them ("none" given is None), each once.
        self.learning_rate_rules = (
            None if rules is None else tuple(_rule(v) for v in dict.fromkeys(rules))
        )
        self.reference_batch_size = check_int("reference_batch_size", reference_batch_size, 1)
        self.augmentation_strengths = _choices(
            "augmentation_strengths",
            augmentation_strengths,
            lambda v: check_float("augmentation_strengths", v, low=0, high=1),
        )
        if augmentation is not None and not isinstance(augmentation, dict):
            raise TypeError(
                f"Invalid value for argument `augmentation`. Received: "
                f"augmentation={augmentation!r}. Expected a dict of ImageDataGenerator "
                "arguments (the augmentation at strength 1), or None for the classic recipe."
            )
        self.augmentation = dict(CLASSIC_RECIPE if augmentation is None else augmentation)
        self.final_sparsities = _choices(
            "final_sparsities",
            final_sparsities,
            lambda v: check_float("final_sparsities", v, low=0, high=1, closed=(True, False)),
        )
        self.precisions = _choices(
            "precisions", precisions, lambda v: check_choice("precisions", v, PRECISIONS)
        )
        self.max_batch_size = (
            None if max_batch_size is None else check_int("max_batch_size", max_batch_size, 1)
        )
        self.grow_every = check_int("grow_every", grow_every, minimum=1)
        self._sample = None  # one input sample, from the first fit (see build)

    # --- build ---------------------------------------------------------------

    def build(self, hp):
        """Builds the user's model under the trial's precision and makes it
        a `FastModel` (if it is not one) with the trial's augmentation and
        pruning."""
        policy = hp.Choice(PRECISION, self.precisions) if self.precisions else None
        outer_policy = keras.config.dtype_policy()
        if policy is not None:
            keras.config.set_dtype_policy(policy)
        try:
            model = self.build_model(hp)
        finally:
            keras.config.set_dtype_policy(outer_policy)
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"build_model(hp) returned {type(model).__name__}. Expected a compiled keras.Model."
            )
        if not model.built and self._sample is not None:
            # A model without an Input builds in its first step; KerasTuner's
            # get_best_models() loads weights into a fresh build before any.
            model(self._sample)
        strength = (
            hp.Choice(AUGMENTATION, self.augmentation_strengths)
            if self.augmentation_strengths
            else 0.0
        )
        sparsity = hp.Choice(SPARSITY, self.final_sparsities) if self.final_sparsities else 0.0
        if isinstance(model, FastModel):
            if self.augmentation_strengths or self.final_sparsities or self.precisions:
                raise TypeError(
                    "build_model(hp) returned a FastModel, but FastHyperModel searches "
                    "augmentation, pruning or precision, which it sets when it makes the "
                    "model a FastModel itself: return a plain keras.Model."
                )
            return model
        arguments = _keras_internals.compile_arguments(model)
        if arguments is None:
            raise ValueError(
                "build_model(hp) returned a model that is not compiled. Compile it in "
                "build_model: FastHyperModel compiles its FastModel the same way."
            )
        fast = FastModel(
            model,
            augmentation=scaled_augmentation(self.augmentation, strength),
            pruning=ConstantSparsity(sparsity, begin_step=0) if sparsity > 0 else None,
            # Searched, or the model's own: never a precision the user did not pick.
            mixed_precision=policy or model.dtype_policy.name,
        )
        fast.compile(**_fast_compile_arguments(arguments))
        return fast

    # --- fit -----------------------------------------------------------------

    def declare_hyperparameters(self, hp):
        """Registers the knobs `fit` reads, so that the oracle knows the
        whole space from the first trial on (KerasTuner calls this once)."""
        self._fit_knobs(hp)

    def _fit_knobs(self, hp):
        """The trial's (batch size or None, `SCALING_RULES` rule, adaptive)
        from `hp`."""
        batch_size = hp.Choice(BATCH_SIZE, self.batch_sizes) if self.batch_sizes else None
        rule = "sqrt" if self.batch_sizes else None
        if self.learning_rate_rules:
            values = [_rule_value(rule) for rule in self.learning_rate_rules]
            rule = _rule(hp.Choice(RULE, values))
        adaptive = False
        if self.adaptive_batch and len(set(self.adaptive_batch)) == 2:
            adaptive = hp.Boolean(ADAPTIVE)
        elif self.adaptive_batch:
            adaptive = hp.Fixed(ADAPTIVE, self.adaptive_batch[0])
        return batch_size, rule, adaptive

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` with the trial's batch size, learning-rate rule and
        batch growth; returns the `History`, as `HyperModel.fit` does."""
        if self._sample is None:
            self._sample = _one_sample(args[0] if args else kwargs.get("x"))
        batch_size, rule, adaptive = self._fit_knobs(hp)
        if batch_size is None:
            batch_size = kwargs.get("batch_size")
        if rule is not None or adaptive or self.batch_sizes:
            _check_array_input(args[0] if args else kwargs.get("x"), batch_size)
        batch_size = batch_size or 32
        epochs = kwargs.get("epochs", 1)
        first_epoch = kwargs.get("initial_epoch", 0)
        growth = {}
        if adaptive:  # doubling at every grow_every-th epoch, up to the largest batch
            largest = self.max_batch_size or 8 * batch_size
            for epoch in range(self.grow_every, epochs, self.grow_every):
                if epoch > first_epoch:
                    growth[epoch] = 2
                elif batch_size * 2 <= largest:  # grown already (a continued trial)
                    batch_size *= 2
        if self.batch_sizes or adaptive:
            kwargs["batch_size"] = batch_size
        if rule is not None and batch_size != self.reference_batch_size:
            _scale_learning_rate(model, self.reference_batch_size, batch_size, rule)
        callbacks = list(kwargs.get("callbacks") or [])
        for callback in callbacks:  # samples per second need a fixed batch
            if isinstance(callback, TimingProfiler) and not growth:
                callback.set_batch_size(batch_size)
        if growth:
            callbacks.append(
                AdaptiveBatchSize(
                    schedule=growth,
                    max_batch_size=largest,
                    learning_rate_rule=rule,
                )
            )
        kwargs["callbacks"] = callbacks
        return model.fit(*args, **kwargs)


def _one_sample(x):
    """A batch of one zero sample shaped like `x`'s (arrays, or a
    `tf.data.Dataset` of batches), to build a model that has no Input; `None`
    for other inputs."""

    def zeros(spec):
        shape, dtype = tuple(spec.shape)[1:], getattr(spec.dtype, "name", spec.dtype)
        if None in shape:
            raise _NoSampleError
        return np.zeros((1, *shape), dtype)

    element_spec = getattr(x, "element_spec", None)
    if element_spec is not None:  # a tf.data.Dataset: (inputs, targets, ...)
        inputs = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    elif isinstance(x, (np.ndarray, list, tuple, dict)) or keras.ops.is_tensor(x):
        inputs = keras.tree.map_structure(np.asarray, x) if not keras.ops.is_tensor(x) else x
    else:
        return None
    try:
        return keras.tree.map_structure(zeros, inputs)
    except (_NoSampleError, AttributeError, TypeError):
        return None


class _NoSampleError(Exception):
    """An input whose sample shape is not known."""


def _check_array_input(x, batch_size):
    """The batch knobs set `fit`'s `batch_size`, which only arrays take."""
    if batch_size is not None and not isinstance(batch_size, int):
        raise TypeError(
            f"Invalid value for argument `batch_size`. Received: batch_size={batch_size!r}. "
            "FastHyperModel scales the learning rate to the trial's batch: give an integer."
        )
    if isinstance(x, keras.utils.PyDataset) or type(x).__module__.startswith("tensorflow"):
        raise TypeError(
            f"Invalid value for argument `x`. Received: x of type {type(x).__name__}. "
            "FastHyperModel's batch size, learning-rate rule and adaptive batch set fit's "
            "batch_size, which needs array inputs (a dataset fixes its own batches)."
        )


def _fast_compile_arguments(arguments):
    """The user's compile arguments for the FastModel: a fresh optimizer of
    the same configuration (the built one belongs to the plain model), and
    the two options Keras resolves from "auto" left to FastModel (a
    `steps_per_execution` other than Keras's default 1 was the user's and
    stays)."""
    arguments = dict(arguments)
    optimizer = arguments.get("optimizer")
    if isinstance(optimizer, keras.optimizers.Optimizer):
        arguments["optimizer"] = optimizer.__class__.from_config(optimizer.get_config())
    arguments.pop("jit_compile", None)
    if arguments.get("steps_per_execution") == 1:
        arguments.pop("steps_per_execution")
    return arguments


def _check_flag(value):
    if not isinstance(value, bool):
        raise TypeError(
            f"Invalid value for argument `adaptive_batch`. Received: {value!r}. "
            "Expected a tuple of bools, e.g. (False, True)."
        )
    return value


def _scale_learning_rate(model, reference_batch_size, batch_size, rule):
    optimizer = model.optimizer
    if optimizer is None:
        raise ValueError("FastHyperModel scales the learning rate of a compiled model: compile it.")
    if rate_comes_from_schedule(optimizer):
        raise ValueError(
            "FastHyperModel scales the learning rate to the trial's batch, and this "
            "optimizer takes it from a LearningRateSchedule: give it a fixed rate, or "
            "pass learning_rate_rules=(None,)."
        )
    base = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    optimizer.learning_rate = scaled_learning_rate(base, reference_batch_size, batch_size, rule)


def scaled_augmentation(augmentation, strength):
    """`augmentation` (ImageDataGenerator arguments) with its numeric ranges
    times `strength`; `None` at strength 0. Flips and fill settings stay."""
    strength = check_float("strength", strength, low=0, high=1)
    if strength == 0:
        return None
    scaled = {}
    for key, value in augmentation.items():
        if key.endswith("_range") and isinstance(value, (int, float)):
            value = value * strength
        elif key.endswith("_range") and isinstance(value, (list, tuple)) and len(value) == 2:
            if key == "zoom_range":  # a pair around 1
                value = tuple(1 + (v - 1) * strength for v in value)
            else:
                value = tuple(v * strength for v in value)
        scaled[key] = value
    return scaled
