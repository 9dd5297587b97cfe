"""`FastModel`: a `keras.Model` that applies the speed-ups on compile and fit.

FastModel is wiring: each speed-up is a part (`keras_fastrain.parts`) that
works on its own. `compile`, `fit`, `evaluate` and `predict` hand the model
and the call's arguments to every part in one documented order (see
`keras_fastrain.parts`), then call Keras with what the parts made of them.

It is used in every Keras style: `FastModel(inputs, outputs)`, a subclass
with its own `call`, `FastSequential([...])`, or `FastModel(model)`.
"""

import typing

import keras

from keras_fastrain import _keras_internals, setup_time
from keras_fastrain.augmentation import as_augmentation_layer
from keras_fastrain.callbacks.step_variants import close_left_open
from keras_fastrain.log import tell
from keras_fastrain.parts import CompilePlan, Part, RunPlan, builtin_parts
from keras_fastrain.parts.augmentation import augmenting
from keras_fastrain.parts.batch_size import batch_size_finder
from keras_fastrain.parts.engine import engine_scope
from keras_fastrain.pruning import strip_pruning
from keras_fastrain.validation import AUTO, check_choice

__all__ = ["FastModel"]

_UNSET = object()  # an option not given to compile (None is a value)


@keras.saving.register_keras_serializable(package="keras_fastrain")
class FastModel(keras.Model):
    """A `keras.Model` that trains faster with the same code.

    Use it wherever `keras.Model` goes: `FastModel(inputs, outputs)`,
    `class Net(FastModel)` with your own `call`, `FastSequential([...])`,
    or `FastModel(model)` around an existing model. On `compile` it decides
    every option left at `"auto"` (shown once, with its reason; read back
    from `model.choices`), creates or moves the variables onto the chosen
    devices, and `fit`, `evaluate` and `predict` then run there.

    Options can be given here or to `compile` (which wins):

    Args:
        distribute: Where to train. `"auto"` (default) keeps a strategy
            scope or distribution you entered, else uses every local device
            of the fastest kind when there are several, else one device.
            `None` or `"none"`: one device. `"mirrored"` (TensorFlow
            `MirroredStrategy`), `"data_parallel"` (JAX `DataParallel`), or
            a `tf.distribute.Strategy` / `keras.distribution.DataParallel`
            object. You never write `strategy.scope()`.
        augmentation: Random transforms of the inputs, applied in training
            only (never in evaluate, predict or export), inside the train
            step. `None` (default): none. A dict of ImageDataGenerator's
            keyword arguments (e.g. `{"rotation_range": 20,
            "horizontal_flip": True}`, see `ImageAugmentation`), a Keras
            layer, or a list of layers.
        mixed_precision: `"auto"` (default: mixed float16 on GPU, bfloat16
            on TPU, float32 on CPU, or the global policy you set), a bool,
            or a policy name (`"float32"`, `"mixed_float16"`,
            `"mixed_bfloat16"`). Mixed precision changes numerics; the log
            says so.
        jit_compile: `"auto"` (default) or a bool. See
            `keras_fastrain.choices.choose_jit_compile`.
        steps_per_execution: `"auto"` (default) or an integer >= 1.
        pruning: `None` (default), a pruning schedule (e.g.
            `keras_fastrain.pruning.PolynomialDecay(0.0, 0.8, 0, 1000)`), or
            a dict of `prune_low_magnitude`'s arguments. The prunable layers
            are wrapped at construction (functional, Sequential and wrapped
            styles; a subclass wraps its own layers), `fit` updates the masks
            with no callback to add, and `strip_pruning()` returns the plain
            pruned model.
        input_pipeline: `"auto"` (default): a `tf.data.Dataset` gets
            `prefetch(AUTOTUNE)` and a `PyDataset` left at `workers=1` loads
            in threads during `fit`/`evaluate`/`predict`, so input overlaps
            the step (see `keras_fastrain.parts.input_pipeline`); arrays
            pass through, Keras already feeds them well. `None`: data is
            used as given.
        learning_rate: `None` (default): the optimizer's rate, as Keras.
            `"auto"`: before each fit, a learning-rate range test on the
            model and its training arrays at the fit's batch (at most 5% of
            the run's steps, counted in the fit's time), kept only if a few
            steps at the suggestion train faster than at the optimizer's
            rate; a kept rate starts a cosine decay (no warm-up) over the
            fit's epochs (`keras_fastrain.callbacks.WarmupDecay`), and the
            optimizer's rate is put back after the fit. A
            `keras_fastrain.learning_rate.LearningRateFinder`: the same, with
            its settings. The decision and its numbers are in
            `model.choices["learning_rate"]`.
        ema: `None` (default): none. `True` or a momentum in (0, 1) (`True`:
            0.99): the optimizer keeps an exponential moving average of the
            weights (Keras's `use_ema`), every validation during `fit`
            scores the average (`keras.callbacks.SwapEMAWeights`, added
            unless you gave one), and `fit` ends with the model holding it.
            `"auto"`: the average (momentum 0.99) is measured in each fit
            (`keras_fastrain.callbacks.MeasuredEMA`): the first validation
            after its first 300 steps scores it and the last weights, and
            it is kept only if it scores at least as well, else the fit
            goes on, and ends, with the last weights. Changes results; see
            `keras_fastrain.parts.weight_average`.
        label_smoothing: `None` (default): the loss as given. A float in
            (0, 1): every crossentropy loss trains on labels smoothed by it
            (Keras's `label_smoothing`; integer labels through
            `keras_fastrain.losses.SparseCategoricalCrossentropy`). Changes
            results; see `keras_fastrain.parts.label_smoothing`.
        selective_backprop: `None` (default): every step trains on its whole
            batch. `True` or a share in (0, 1) (`True`: 0.5): each step
            runs the forward pass on the whole batch and trains on the share
            with the highest loss
            (`keras_fastrain.callbacks.SelectiveBackprop`, added to `fit`
            unless you gave one). Changes results; see
            `keras_fastrain.parts.selective_backprop`.
        progressive_resizing: `None` (default): every step sees the images
            as given. `True` or a scale in (0, 1) (`True`: 0.5): each fit
            trains its first half on images scaled down by it, grows them,
            and its last 20% at full size
            (`keras_fastrain.callbacks.ProgressiveResizing`, added to `fit`
            unless you gave one); the model must take smaller images.
            Changes results; see `keras_fastrain.parts.progressive_resizing`.
        layer_freezing: `None` (default): every layer trains to the end.
            `True` or a share in [0, 1) of the fit (`True`: 0.5): after it
            the first layers stop training, stage by stage
            (`keras_fastrain.callbacks.LayerFreezing`, added to `fit` unless
            you gave one). Changes results; see
            `keras_fastrain.parts.layer_freezing`. `selective_backprop`,
            `progressive_resizing` and `layer_freezing` each swap the
            training step: at most one of them.
        parts: List of your own `keras_fastrain.parts.Part`s, applied after
            the built-in ones in the order given. Defaults to `None`.
        verbose: `1` (default) prints each decision once, as
            `keras-fastrain: ...`, when it is made (a `fit` with
            `verbose=0` prints none); `0` prints nothing. The decisions are
            always in `model.choices`.
        **kwargs: What `keras.Model` takes.

    Example:

    ```python
    inputs = keras.Input((28, 28))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(128, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras_fastrain.FastModel(inputs, outputs, augmentation={"rotation_range": 10})
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    print(model.choices["jit_compile"])
    ```
    """

    # The class `FastModel(...)` builds for each Keras style of
    # construction, as keras.Model does for Functional; filled in by the
    # subclasses that declare `style=` (keras_fastrain/model/styles.py).
    _styles: typing.ClassVar[dict] = {}

    def __new__(cls, *args, **kwargs):
        if cls is FastModel:
            if _keras_internals.functional_init_arguments(args, kwargs):
                style = cls._styles["functional"]
                return style.__new__(style, *args, **kwargs)
            if (args and isinstance(args[0], keras.Model)) or "model" in kwargs:
                style = cls._styles["wrapped"]
                return style.__new__(style, *args, **kwargs)
        return super().__new__(cls, *args, **kwargs)

    def __init_subclass__(cls, style=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if style is not None:
            FastModel._styles[style] = cls
        if "call" in cls.__dict__:
            cls.call = augmenting(cls.__dict__["call"])

    def __init__(
        self,
        *args,
        distribute=AUTO,
        augmentation=None,
        mixed_precision=AUTO,
        jit_compile=AUTO,
        steps_per_execution=AUTO,
        input_pipeline=AUTO,
        learning_rate=None,
        ema=None,
        label_smoothing=None,
        selective_backprop=None,
        progressive_resizing=None,
        layer_freezing=None,
        pruning=None,
        parts=None,
        verbose=1,
        **kwargs,
    ):
        if pruning is not None:
            raise ValueError(
                f"{type(self).__name__} is a subclassed FastModel, whose graph FastModel "
                "cannot rebuild: wrap the layers to prune with "
                "keras_fastrain.pruning.prune_low_magnitude where __init__ creates them "
                "(fit then updates their masks by itself)."
            )
        super().__init__(*args, **kwargs)
        self._own_parts = _check_parts(parts)
        self._parts = builtin_parts() + self._own_parts
        self._fastrain_options = {"verbose": 1}
        for part in self._parts:
            self._fastrain_options.update(part.options)
        self._engine = None
        self._choices = {}
        self._shown = set()
        self.augmentation = None
        self._set_options(
            distribute=distribute,
            augmentation=augmentation,
            mixed_precision=mixed_precision,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            input_pipeline=input_pipeline,
            learning_rate=learning_rate,
            ema=ema,
            label_smoothing=label_smoothing,
            selective_backprop=selective_backprop,
            progressive_resizing=progressive_resizing,
            layer_freezing=layer_freezing,
            verbose=verbose,
        )

    def _set_options(self, **options):
        """Records options, each checked now (by the part that reads it) so
        that a typo fails at once."""
        owners = {name: part for part in self._parts for name in part.options}
        for name, value in options.items():
            if name == "augmentation":
                # Kept as a tracked layer only: its random state is model state.
                self.augmentation = as_augmentation_layer(value)
                continue
            if name == "verbose":
                check_choice("verbose", value, (0, 1))
            else:
                owners[name].check_option(name, value)
            self._fastrain_options[name] = value

    @property
    def choices(self):
        """Dict of option name to `keras_fastrain.choices.Choice`: what was
        decided at the last `compile` (and `fit`), and why."""
        return dict(self._choices)

    @property
    def engine(self):
        """The `keras_fastrain.distribute.Engine` chosen at `compile`."""
        return self._engine

    @property
    def parts(self):
        """The list of parts this model applies, in order (see `keras_fastrain.parts`)."""
        return list(self._parts)

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        run_eagerly=False,
        steps_per_execution=None,
        jit_compile=None,
        auto_scale_loss=True,
        *,
        distribute=_UNSET,
        augmentation=_UNSET,
        mixed_precision=_UNSET,
        input_pipeline=_UNSET,
        learning_rate=_UNSET,
        ema=_UNSET,
        label_smoothing=_UNSET,
        selective_backprop=_UNSET,
        progressive_resizing=_UNSET,
        layer_freezing=_UNSET,
        verbose=_UNSET,
    ):
        """Configures the model for training, as `keras.Model.compile`.

        Takes `keras.Model.compile`'s arguments, in its order, and
        FastModel's options (see the class) as keywords; an option given
        here replaces the constructor's. `jit_compile` and
        `steps_per_execution` left at `None` use the constructor's value
        (`"auto"` by default), not Keras's defaults. The parts then decide
        every option left at `"auto"`, in their order.
        """
        given = {
            "distribute": distribute,
            "augmentation": augmentation,
            "mixed_precision": mixed_precision,
            "jit_compile": _UNSET if jit_compile is None else jit_compile,
            "steps_per_execution": _UNSET if steps_per_execution is None else steps_per_execution,
            "input_pipeline": input_pipeline,
            "learning_rate": learning_rate,
            "ema": ema,
            "label_smoothing": label_smoothing,
            "selective_backprop": selective_backprop,
            "progressive_resizing": progressive_resizing,
            "layer_freezing": layer_freezing,
            "verbose": verbose,
        }
        self._set_options(**{k: v for k, v in given.items() if v is not _UNSET})
        compile_kwargs = {
            "loss": loss,
            "loss_weights": loss_weights,
            "metrics": metrics,
            "weighted_metrics": weighted_metrics,
            "run_eagerly": run_eagerly,
            "auto_scale_loss": auto_scale_loss,
        }
        options = self._fastrain_options
        plan = CompilePlan(
            self, self._parts, options, optimizer, compile_kwargs, options["verbose"]
        )
        self._choices = {}
        with plan.stack:
            for part in self._parts:
                part.on_compile(plan)
            self._show(plan)
            with engine_scope(self, self._engine):
                super().compile(plan.optimizer, **plan.compile_kwargs)

    def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """Trains the model, as `keras.Model.fit`, on the engine's devices.

        `batch_size` is the global batch on every engine: with several
        workers that each feed their own share (Horovod, JAX multi-process),
        array inputs are split so that each worker trains on its part of
        every global batch, and a `tf.data` dataset's batches are dealt out
        in turn (each worker's batch is then the dataset's).

        `batch_size` may also be `"auto"` or a
        `keras_fastrain.batching.BatchSizeFinder`: the batch with the best
        goodput is measured first, on array inputs or a `ResizableDataset`,
        and used; the search is kept in `model.batch_size_search`. The
        steps it measured are kept as training (on fresh rows, the held-out
        validation rows excepted), so `optimizer.iterations`, and any
        schedule driven by it, counts them beyond `epochs`; with a
        `class_weight` they are not kept. With an
        `AdaptiveBatchSize` callback, array inputs are served by a
        `ResizableDataset` whose batch grows (see
        `keras_fastrain.parts.batch_size`). Every callback with a
        `set_batch_size` method is told the global batch of the run.
        """
        if len(args) > len(_FIT_ARGUMENTS):
            raise TypeError(f"fit() takes at most {len(_FIT_ARGUMENTS) + 3} positional arguments.")
        kwargs = {**dict(zip(_FIT_ARGUMENTS, args, strict=False)), **kwargs}
        batch_size_finder(batch_size)  # a bad value fails before anything runs
        return self._run("fit", super().fit, x, y, batch_size, kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """Evaluates the model, as `keras.Model.evaluate` (no augmentation);
        with several workers, each evaluates its share (see `fit`)."""
        kwargs = {**dict(zip(_EVALUATE_ARGUMENTS, args, strict=False)), **kwargs}
        return self._run("evaluate", super().evaluate, x, y, batch_size, kwargs)

    def predict(self, x, batch_size=None, *args, **kwargs):
        """Predicts, as `keras.Model.predict` (no augmentation).

        With several replicas, array inputs whose last batch would not split
        evenly over them are padded, and the padding's outputs dropped.
        """
        kwargs = {**dict(zip(_PREDICT_ARGUMENTS, args, strict=False)), **kwargs}
        return self._run("predict", super().predict, x, None, batch_size, kwargs)

    def _run(self, method, keras_method, x, y, batch_size, kwargs):
        """Applies every part to one call, then makes it with Keras's method."""
        verbose = self._fastrain_options["verbose"] and kwargs.get("verbose", "auto") != 0
        plan = RunPlan(self, self._parts, method, x, y, batch_size, kwargs, verbose)
        if method == "fit":  # the parts' measurements from here on count in the fit's time
            setup_time.clear(self)
            close_left_open(self)  # a step variant a failed fit left behind
        with plan.stack:
            for part in self._parts:
                part.on_run(plan)
            self._show(plan)
            if method == "fit":
                _share_batch_size(plan)
            try:
                if method == "predict":
                    result = keras_method(plan.x, plan.batch_size, **plan.kwargs)
                else:
                    result = keras_method(plan.x, plan.y, plan.batch_size, **plan.kwargs)
            finally:
                if method == "fit":  # a fit that failed leaves no step variant behind
                    close_left_open(self)
        for finish in plan.results:
            result = finish(result)
        return result

    def _show(self, plan):
        """Shows each decision once per model, when the plan is verbose."""
        for choice in self._choices.values():
            line = f"FastModel {self.name}: {choice}"
            if line not in self._shown:
                self._shown.add(line)
                tell(line, plan.verbose)

    def train_on_batch(self, *args, **kwargs):
        with engine_scope(self, self._engine):
            return super().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        with engine_scope(self, self._engine):
            return super().test_on_batch(*args, **kwargs)

    def predict_on_batch(self, *args, **kwargs):
        with engine_scope(self, self._engine):
            return super().predict_on_batch(*args, **kwargs)

    def strip_pruning(self):
        """Returns this model without pruning wrappers, as a plain Keras model
        (see `keras_fastrain.pruning.strip_pruning`)."""
        return strip_pruning(self)

    def get_config(self):
        config = super().get_config()
        options = dict(self._fastrain_options)
        for part in self._parts:
            for name in part.options:
                options[name] = part.saved_option(name, options[name])
        options["augmentation"] = (
            None
            if self.augmentation is None
            else keras.saving.serialize_keras_object(self.augmentation)
        )
        if self._own_parts:
            options["parts"] = [keras.saving.serialize_keras_object(p) for p in self._own_parts]
        config.update(options)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("augmentation", "parts"):
            value = config.get(key)
            if isinstance(value, (dict, list)) and value:
                config[key] = keras.saving.deserialize_keras_object(
                    value, custom_objects=custom_objects
                )
        return super().from_config(config, custom_objects=custom_objects)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config:
            # Decided again on load: the loading machine may differ.
            config["jit_compile"] = self._fastrain_options["jit_compile"]
            config["steps_per_execution"] = self._fastrain_options["steps_per_execution"]
        return config

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def call(self, inputs, training=None):
        raise NotImplementedError(
            f"{type(self).__name__} has no `call`. Subclass FastModel and define "
            "`call`, or use FastModel(inputs, outputs) or FastModel(model)."
        )


FastModel.call = augmenting(FastModel.call)


# keras.Model.fit's arguments after `batch_size`, in order.
_FIT_ARGUMENTS = (
    "epochs",
    "verbose",
    "callbacks",
    "validation_split",
    "validation_data",
    "shuffle",
    "class_weight",
    "sample_weight",
    "initial_epoch",
    "steps_per_epoch",
    "validation_steps",
    "validation_batch_size",
    "validation_freq",
)


# keras.Model.evaluate's and predict's arguments after `batch_size`, in order.
_EVALUATE_ARGUMENTS = ("verbose", "sample_weight", "steps", "callbacks", "return_dict")
_PREDICT_ARGUMENTS = ("verbose", "steps", "callbacks")


def _check_parts(parts):
    """The user's parts as a list, each a `keras_fastrain.parts.Part`."""
    parts = list(parts or [])
    for part in parts:
        if not isinstance(part, Part):
            raise TypeError(
                f"Invalid value for argument `parts`. Received: an item {part!r}. "
                "Expected a list of keras_fastrain.parts.Part instances."
            )
    return parts


def _share_batch_size(plan):
    """Tells every callback that asks (`set_batch_size`) the run's global batch."""
    if plan.global_batch_size is None or plan.batch_size_varies:
        return
    for callback in plan.callbacks:
        set_batch_size = getattr(callback, "set_batch_size", None)
        if callable(set_batch_size):
            set_batch_size(int(plan.global_batch_size))
