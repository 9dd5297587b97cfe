"""`FastModel`: a `keras.Model` that applies the speed-ups on compile and fit.

FastModel only wires parts together; each part works on its own:
- where it trains: `keras_fastrain.distribute` (one device, MirroredStrategy,
  JAX DataParallel), entered for the user, variables moved under it;
- augmentation: `keras_fastrain.augmentation`, run inside the train step on
  the model's inputs, in training only;
- precision, XLA and steps per call: `keras_fastrain.choices`, each `"auto"`
  decided with its reason, logged once, readable from `model.choices`;
- the input pipeline: `keras_fastrain.data`, so input overlaps the step.

It is used in every Keras style: `FastModel(inputs, outputs)`, a subclass
with its own `call`, `FastSequential([...])`, or `FastModel(existing_model)`.
"""

import contextlib
import functools
import inspect
import logging
import math

import keras
import numpy as np

from keras_fastrain import _keras_internals, choices
from keras_fastrain.augmentation import as_augmentation_layer
from keras_fastrain.batching.finder import BatchSizeFinder
from keras_fastrain.batching.grouped import GroupedBatches
from keras_fastrain.batching.replica_batches import replica_batches
from keras_fastrain.batching.resizable import ResizableBatches, ResizableDataset
from keras_fastrain.batching.tf_data_batches import TFDataBatches
from keras_fastrain.callbacks.adaptive_batch_size import AdaptiveBatchSize
from keras_fastrain.callbacks.agreement import AgreementGuard
from keras_fastrain.callbacks.distributed import (
    BroadcastGlobalVariablesCallback,
    HorovodCallback,
    MetricAverageCallback,
)
from keras_fastrain.data import restore_workers, tune_input
from keras_fastrain.distribute import (
    MULTI_WORKER_ENGINES,
    Engine,
    check_distribute,
    resolve_engine,
)
from keras_fastrain.distribute.sharding import shard, shard_dataset, worker_rows
from keras_fastrain.pruning import UpdatePruningStep, prune_low_magnitude, strip_pruning
from keras_fastrain.pruning.callbacks import pruning_wrappers
from keras_fastrain.validation import check_choice, check_float

logger = logging.getLogger("keras_fastrain")
if not logger.handlers:
    # Shown by default, like Keras's own messages; silence with
    # logging.getLogger("keras_fastrain").setLevel(logging.WARNING).
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("keras-fastrain: %(message)s"))
    logger.addHandler(_handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logger.propagate = False

AUTO = choices.AUTO
_UNSET = object()  # an option not given to compile (None is a value)
_DEFAULTS = {
    "distribute": AUTO,
    "mixed_precision": AUTO,
    "jit_compile": AUTO,
    "steps_per_execution": AUTO,
    "input_pipeline": AUTO,
}


def _augmenting(call):
    """Wraps a model's `call` so that its inputs are augmented in training.

    The augmentation runs inside `call`, so it is part of the compiled train
    step on every backend (JAX's stateless step calls `call` directly), and
    its random state is model state. A `call` without a `training` argument
    gets one (keyword-only), because Keras passes it only when it is there.
    """
    if getattr(call, "_fastrain_augmenting", False):
        return call
    signature = inspect.signature(call)
    takes_training = "training" in signature.parameters
    # Keras may pass the inputs by their name (`call(images=...)`).
    inputs_name = list(signature.parameters)[1]

    @functools.wraps(call)
    def augmenting_call(self, *args, training=None, **kwargs):
        augmentation = getattr(self, "augmentation", None)
        if augmentation is not None:
            inputs = args[0] if args else kwargs[inputs_name]
            if training:
                inputs = augmentation(inputs, training=True)
            elif not augmentation.built:
                # Its state is model state: create it whenever the model builds.
                augmentation.build(tuple(inputs.shape))
            if args:
                args = (inputs, *args[1:])
            else:
                kwargs[inputs_name] = inputs
        if takes_training:
            kwargs["training"] = training
        return call(self, *args, **kwargs)

    if not takes_training:
        parameters = list(signature.parameters.values())
        training = inspect.Parameter("training", inspect.Parameter.KEYWORD_ONLY, default=None)
        at = len(parameters)
        if parameters and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD:
            at -= 1
        parameters.insert(at, training)
        augmenting_call.__signature__ = signature.replace(parameters=parameters)
    augmenting_call._fastrain_augmenting = True
    return augmenting_call


@keras.saving.register_keras_serializable(package="keras_fastrain")
class FastModel(keras.Model):
    """A `keras.Model` that trains faster with the same code.

    Use it wherever `keras.Model` goes: `FastModel(inputs, outputs)`,
    `class Net(FastModel)` with your own `call`, `FastSequential([...])`,
    or `FastModel(model)` around an existing model. On `compile` it decides
    every option left at `"auto"` (logged once, with its reason; read back
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
            the step (see `keras_fastrain.data`); arrays pass through, Keras
            already feeds them well. `None`: data is used as given.
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

    def __new__(cls, *args, **kwargs):
        if cls is FastModel:
            if _keras_internals.functional_init_arguments(args, kwargs):
                return FunctionalFastModel.__new__(FunctionalFastModel, *args, **kwargs)
            if (args and isinstance(args[0], keras.Model)) or "model" in kwargs:
                return WrappedFastModel.__new__(WrappedFastModel, *args, **kwargs)
        return super().__new__(cls, *args, **kwargs)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "call" in cls.__dict__:
            cls.call = _augmenting(cls.__dict__["call"])

    def __init__(
        self,
        *args,
        distribute=AUTO,
        augmentation=None,
        mixed_precision=AUTO,
        jit_compile=AUTO,
        steps_per_execution=AUTO,
        input_pipeline=AUTO,
        pruning=None,
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
        self._fastrain_options = dict(_DEFAULTS)
        self._engine = None
        self._choices = {}
        self._logged = set()
        self.augmentation = None
        self._set_options(
            distribute=distribute,
            augmentation=augmentation,
            mixed_precision=mixed_precision,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            input_pipeline=input_pipeline,
        )

    def _set_options(self, **options):
        """Records options, checking each now so a typo fails at once."""
        for name, value in options.items():
            if name == "augmentation":
                # Kept as a tracked layer only: its random state is model state.
                self.augmentation = as_augmentation_layer(value)
                continue
            if name == "distribute":
                check_distribute(value)
            elif name == "mixed_precision":
                choices.choose_mixed_precision(value, devices=["cpu:0"])
            elif name == "jit_compile":
                choices.choose_jit_compile(value)
            elif name == "steps_per_execution":
                choices.choose_steps_per_execution(value)
            elif name == "input_pipeline":
                check_choice("input_pipeline", value, (AUTO, None))
            self._fastrain_options[name] = value

    @property
    def choices(self):
        """Dict of option name to `keras_fastrain.choices.Choice`: what was
        decided at the last `compile`, and why."""
        return dict(self._choices)

    @property
    def engine(self):
        """The `keras_fastrain.distribute.Engine` chosen at `compile`."""
        return self._engine

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
    ):
        """Configures the model for training, as `keras.Model.compile`.

        Takes `keras.Model.compile`'s arguments, in its order, and
        FastModel's options (see the class) as keywords; an option given
        here replaces the constructor's. `jit_compile` and
        `steps_per_execution` left at `None` use the constructor's value
        (`"auto"` by default), not Keras's defaults.
        """
        given = {
            "distribute": distribute,
            "augmentation": augmentation,
            "mixed_precision": mixed_precision,
            "jit_compile": _UNSET if jit_compile is None else jit_compile,
            "steps_per_execution": _UNSET if steps_per_execution is None else steps_per_execution,
            "input_pipeline": input_pipeline,
        }
        self._set_options(**{k: v for k, v in given.items() if v is not _UNSET})
        options = self._fastrain_options
        engine = resolve_engine(options["distribute"])
        self._build_augmentation()
        decided = [
            choices.Choice("distribute", engine.describe(), engine.reason),
            self._apply_precision(options["mixed_precision"]),
            choices.choose_jit_compile(
                options["jit_compile"],
                xla_incompatible=self._xla_incompatible_layers() + engine.xla_incompatible,
                distributed=engine.in_step_replicas,
            ),
            choices.choose_steps_per_execution(
                options["steps_per_execution"], distributed=engine.in_step_replicas
            ),
        ]
        self._engine = engine
        self._choices = {choice.option: choice for choice in decided}
        self._log_choices()
        optimizer = engine.prepare_optimizer(optimizer)
        with self._on_engine():
            super().compile(
                optimizer,
                loss,
                loss_weights=loss_weights,
                metrics=metrics,
                weighted_metrics=weighted_metrics,
                run_eagerly=run_eagerly,
                steps_per_execution=self._choices["steps_per_execution"].value,
                jit_compile=self._choices["jit_compile"].value,
                auto_scale_loss=auto_scale_loss,
            )

    def _build_augmentation(self):
        """Builds the augmentation on known input shapes, so that a
        non-image input fails at compile, not in the first step."""
        if self.augmentation is None or self.augmentation.built:
            return
        shape = _input_shape(self)
        if shape is not None:
            self.augmentation.build(shape)

    def _xla_incompatible_layers(self):
        """Class names of the layers XLA cannot compile here."""
        layers = [layer for layer in _keras_internals.all_layers(self) if not layer.supports_jit]
        if self.augmentation is not None and keras.backend.backend() == "tensorflow":
            # TensorFlow's image transforms (ours and Keras's Random* layers)
            # have no XLA kernel, and an unbuilt augmentation cannot say yet.
            layers.append(self.augmentation)
        return tuple(dict.fromkeys(type(layer).__name__ for layer in layers))

    def _apply_precision(self, requested):
        choice = choices.choose_mixed_precision(
            requested, current=keras.mixed_precision.dtype_policy().name
        )
        for layer in _keras_internals.all_layers(self):
            if layer.dtype_policy.name != choice.value:
                layer.dtype_policy = choice.value
        return choice

    def _log_choices(self):
        for choice in self._choices.values():
            line = str(choice)
            if line not in self._logged:
                self._logged.add(line)
                logger.info("FastModel %s: %s", self.name, line)

    def _on_engine(self):
        """Moves variables made outside the engine onto it; enters its scope."""
        engine = self._engine or Engine()
        variables = list(self.variables)
        if self.compiled:
            optimizer = getattr(self, "optimizer", None)
            variables += list(optimizer.variables if optimizer else []) + self.metrics_variables
        if engine.adopt(self, variables):
            # Compiled step functions captured the old variables.
            self.train_function = self.test_function = self.predict_function = None
        return engine.scope()

    def _check_batches(self, x, batch_size, validation_split=0.0):
        count = _sample_count(x)
        if count is not None and self._engine is not None and not validation_split:
            self._engine.check_batches(count, batch_size or 32)

    def _tuned(self, data):
        """`data` set up to overlap with the step (see `keras_fastrain.data`)."""
        if self._fastrain_options["input_pipeline"] != AUTO:
            return data
        data, choice = tune_input(data)
        if choice is not None:
            self._choices[choice.option] = choice
            self._log_choices()
        return data

    def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """Trains the model, as `keras.Model.fit`, on the engine's devices.

        `batch_size` is the global batch on every engine: with several
        workers that each feed their own share (Horovod, JAX multi-process),
        array inputs are split so that each worker trains on its part of
        every global batch, and a `tf.data` dataset's batches are dealt out
        in turn (each worker's batch is then the dataset's).

        `batch_size` may also be `"auto"` or a
        `keras_fastrain.batching.BatchSizeFinder`: the fastest batch that
        fits is measured first, on array inputs or a `ResizableDataset`,
        and used; the search is kept in `model.batch_size_search`. With an
        `AdaptiveBatchSize` callback, array inputs are served by a
        `ResizableDataset` whose batch grows (`validation_split` is taken
        from the arrays first, as Keras does), and a `keras.utils.PyDataset`
        or a batched `tf.data.Dataset` by a `GroupedBatches` or
        `TFDataBatches`, which grow by whole batches of their own.
        """
        if len(args) > len(_FIT_ARGUMENTS):
            raise TypeError(f"fit() takes at most {len(_FIT_ARGUMENTS) + 3} positional arguments.")
        kwargs = {**dict(zip(_FIT_ARGUMENTS, args, strict=False)), **kwargs}
        growth = [c for c in kwargs.get("callbacks") or [] if isinstance(c, AdaptiveBatchSize)]
        with self._xla_off_while(growth):  # a search then measures what will train
            x, y, batch_size = self._plan_batches(x, y, batch_size, growth, kwargs)
            for callback in growth:
                _give_data(callback, x)
            return self._fit_on_engine(x, y, batch_size, kwargs)

    def _fit_on_engine(self, x, y, batch_size, kwargs):
        """`keras.Model.fit` on the engine, each worker on its share."""
        global_batch = batch_size
        x, y, batch_size = self._worker_share(x, y, batch_size, kwargs)
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and 2 <= len(validation) <= 3:
            val_x, val_y, val_batch = self._worker_share(
                validation[0], validation[1], kwargs.get("validation_batch_size") or global_batch
            )
            validation = (val_x, val_y, *validation[2:])
            if kwargs.get("validation_batch_size"):
                kwargs["validation_batch_size"] = val_batch
        elif validation is not None:
            validation = self._worker_share(validation, None, None)[0]
        if validation is not None:
            kwargs["validation_data"] = validation
        self._check_batches(x, batch_size, kwargs.get("validation_split"))
        kwargs["callbacks"] = self._with_engine_callbacks(
            self._with_pruning_updates(kwargs.get("callbacks"))
        )
        with restore_workers(x, validation), self._on_engine():
            x = self._tuned(x)
            engine = self._engine
            if engine is not None:
                engine.before_fit()
            if isinstance(x, ResizableBatches) and engine and engine.name == "multi_worker":
                x = replica_batches(self._engine.strategy, x)  # see its module
            if validation is not None:
                kwargs["validation_data"] = self._tuned(validation)
            return super().fit(x, y, batch_size, **kwargs)

    @contextlib.contextmanager
    def _xla_off_while(self, growth):
        """Turns an automatic XLA off on TensorFlow for a fit whose batch
        grows: XLA compiles the step again for every new batch size (about
        2 s each for the baseline model on 2 CPU cores, more than the whole
        epoch), while TensorFlow's graph takes any batch size as it is."""
        automatic = self._fastrain_options["jit_compile"] == AUTO
        if not (
            growth and automatic and self.jit_compile and keras.backend.backend() == "tensorflow"
        ):
            yield
            return
        compiled_choice = self._choices["jit_compile"]
        self.jit_compile = False
        self.train_function = self.test_function = self.predict_function = None
        self._choices["jit_compile"] = choices.Choice(
            "jit_compile",
            False,
            "while AdaptiveBatchSize grows the batch: XLA would compile the step again for "
            "every batch size (about 2 s each measured, benchmarks/time_to_accuracy.py)",
        )
        self._log_choices()
        try:
            yield
        finally:
            self.jit_compile = True
            self.train_function = self.test_function = self.predict_function = None
            self._choices["jit_compile"] = compiled_choice

    def _plan_batches(self, x, y, batch_size, growth, kwargs):
        """Searches the batch size when asked (`"auto"`, a finder, or
        `AdaptiveBatchSize(max_batch_size="auto")`), and wraps arrays in a
        `ResizableDataset` for `growth` (the `AdaptiveBatchSize` callbacks).
        Returns the `x`, `y` and `batch_size` to train with."""
        finder = _batch_size_finder(batch_size)
        capped = [c for c in growth if c.max_batch_size == AUTO]
        if finder is None and not growth:
            return x, y, batch_size
        for callback in growth:  # no bound from an earlier fit's search
            callback.limit_to_search(None)
        engine = self._engine or Engine()
        resizable = isinstance(x, ResizableDataset)
        searching = finder is not None or capped
        if resizable:
            arrays = (x.x, x.y, x.sample_weight)
        elif isinstance(x, keras.utils.PyDataset) and not searching:
            # A PyDataset grows by whole batches of its own.
            return (x if isinstance(x, ResizableBatches) else GroupedBatches(x)), None, None
        elif _is_tf_dataset(x) and not searching:  # so does a tf.data dataset
            return TFDataBatches(self._worker_share(x, None, None)[0]), None, None
        elif _sample_count(x) is not None:
            x, y = _split_validation(x, y, kwargs)
            arrays = (x, y, kwargs.get("sample_weight"))
        else:
            raise TypeError(
                f"Invalid value for argument `x`. Received: x of type {type(x).__name__}. "
                "FastModel measures batch sizes (batch_size='auto', max_batch_size='auto') "
                "on arrays (or a list/dict of arrays) or a keras_fastrain.batching."
                "ResizableDataset; it grows the batch of those, of a keras.utils.PyDataset "
                "or of a tf.data.Dataset."
            )
        if finder is not None:
            search = self._search_batch_size(finder, *arrays, own_share=resizable)
            batch_size = search.batch_size
            for callback in growth:
                callback.limit_to_search(search.max_batch_size)
        elif resizable:
            batch_size = x.batch_size * _feeders(engine)
        if capped:  # grow from the start up to the fastest batch
            start = BatchSizeFinder(min_batch_size=batch_size or 32)
            search = self._search_batch_size(start, *arrays, own_share=resizable)
            for callback in capped:
                callback.limit_to_search(search.batch_size)
        if resizable:
            x.batch_size = batch_size // _feeders(engine)
            return x, None, None
        if not growth:
            return x, y, batch_size
        batch_size = batch_size or 32
        if kwargs.get("validation_batch_size") is None:
            kwargs["validation_batch_size"] = batch_size
        x, y, local_batch = self._worker_share(x, y, batch_size, kwargs)
        data = ResizableDataset(
            x,
            y,
            kwargs.pop("sample_weight", None),
            batch_size=local_batch,
            shuffle=kwargs.pop("shuffle", True) is not False,
            # Workers that each read every global batch must shuffle alike.
            seed=int(engine.broadcast(np.random.randint(2**31))) if engine.size > 1 else None,
            multiple_of=engine.num_replicas if engine.feeds_global_batch() else 1,
        )
        return data, None, None

    def _search_batch_size(self, finder, x, y, sample_weight, own_share=False):
        """Runs `finder` on this model (each worker on its share of the
        arrays, unless they are its `own_share` already); keeps the result
        in `batch_size_search` and logs it."""
        engine = self._engine or Engine()
        if _feeders(engine) > 1 and not own_share:
            weights = {"sample_weight": sample_weight}
            x, y, _ = self._worker_share(x, y, engine.size, weights)
            sample_weight = weights["sample_weight"]
        replicas = engine.num_replicas if engine.feeds_global_batch() else 1
        with self._on_engine():
            search = finder.find(self, x, y, sample_weight, multiple_of=replicas, fit=super().fit)
        self.batch_size_search = search
        self._choices["batch_size"] = choices.Choice(
            "batch_size",
            search.batch_size,
            f"the smallest within {search.margin:.0%} of the fastest of "
            f"{len(search.trials)} sizes measured (largest that fit: "
            f"{search.max_batch_size})",
        )
        self._log_choices()
        return search

    def _worker_share(self, x, y, batch_size, kwargs=None):
        """This worker's share of `x`, `y` (and `kwargs`' sample weights),
        and its batch size, when each worker feeds its own part."""
        engine = self._engine
        if engine is None or engine.size == 1 or engine.feeds_global_batch():
            return x, y, batch_size
        if _is_tf_dataset(x):
            return shard_dataset(x, engine.rank, engine.size), y, batch_size
        count = _sample_count(x)
        if count is None:  # a PyDataset or generator: the user's data is per worker
            return x, y, batch_size
        rows = worker_rows(count, batch_size or 32, engine.rank, engine.size)
        if kwargs is not None and kwargs.get("sample_weight") is not None:
            kwargs["sample_weight"] = shard(kwargs["sample_weight"], rows)
        return shard(x, rows), shard(y, rows), (batch_size or 32) // engine.size

    def _with_engine_callbacks(self, callbacks):
        """`callbacks`, with what an engine whose workers train apart needs
        (Horovod): the same start, and epoch metrics averaged first; on
        every engine whose workers could disagree, the agreement check."""
        engine = self._engine
        if engine is None or engine.size == 1:
            return callbacks
        averaging = (MetricAverageCallback, HorovodCallback)
        if not engine.averages_gradients:
            if not any(isinstance(c, averaging) for c in callbacks):
                callbacks.insert(0, MetricAverageCallback())
            broadcasting = (BroadcastGlobalVariablesCallback, HorovodCallback)
            if not any(isinstance(c, broadcasting) for c in callbacks):
                callbacks.append(BroadcastGlobalVariablesCallback(0))
        # The metric averaging checks at each epoch's end itself.
        if engine.weights_can_diverge and not any(
            isinstance(c, (AgreementGuard, *averaging)) for c in callbacks
        ):
            callbacks.append(AgreementGuard())
        return callbacks

    def _with_pruning_updates(self, callbacks):
        """`callbacks`, plus `UpdatePruningStep` if the model prunes and it is missing."""
        callbacks = list(callbacks or [])
        if pruning_wrappers(self) and not any(isinstance(c, UpdatePruningStep) for c in callbacks):
            callbacks.append(UpdatePruningStep())
        return callbacks

    def strip_pruning(self):
        """Returns this model without pruning wrappers, as a plain Keras model
        (see `keras_fastrain.pruning.strip_pruning`)."""
        if isinstance(self, WrappedFastModel):
            return strip_pruning(self.model)
        return strip_pruning(self)

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """Evaluates the model, as `keras.Model.evaluate` (no augmentation);
        with several workers, each evaluates its share (see `fit`)."""
        x, y, batch_size = self._worker_share(x, y, batch_size, kwargs)
        self._check_batches(x, batch_size)
        with restore_workers(x), self._on_engine():
            results = super().evaluate(self._tuned(x), y, batch_size, *args, **kwargs)
        engine = self._engine
        if engine is not None and not engine.averages_gradients and engine.size > 1:
            # Workers that train apart also measured apart: their mean.
            results = keras.tree.map_structure(lambda v: engine.allreduce(v, "mean"), results)
        return results

    def predict(self, x, batch_size=None, *args, **kwargs):
        """Predicts, as `keras.Model.predict` (no augmentation).

        With several replicas, array inputs whose last batch would not split
        evenly over them are padded, and the padding's outputs dropped.
        """
        count = _sample_count(x)
        replicas = self._engine.num_replicas if self._engine else 1
        padding = 0 if count is None else (-count) % replicas
        if padding:
            x = keras.tree.map_structure(lambda a: np.concatenate([a, a[:padding]]), x)
        with restore_workers(x), self._on_engine():
            outputs = super().predict(self._tuned(x), batch_size, *args, **kwargs)
        if padding:
            outputs = keras.tree.map_structure(lambda a: a[:count], outputs)
        return outputs

    def train_on_batch(self, *args, **kwargs):
        with self._on_engine():
            return super().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        with self._on_engine():
            return super().test_on_batch(*args, **kwargs)

    def predict_on_batch(self, *args, **kwargs):
        with self._on_engine():
            return super().predict_on_batch(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        options = dict(self._fastrain_options)
        if not isinstance(options["distribute"], str) or options["distribute"] in (
            MULTI_WORKER_ENGINES
        ):
            # A strategy object or a worker's job belongs to this process; the
            # loading one decides from its own environment.
            options["distribute"] = AUTO
        options["augmentation"] = (
            None
            if self.augmentation is None
            else keras.saving.serialize_keras_object(self.augmentation)
        )
        config.update(options)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("augmentation"), dict) and "class_name" in config["augmentation"]:
            config["augmentation"] = keras.saving.deserialize_keras_object(
                config["augmentation"], custom_objects=custom_objects
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


FastModel.call = _augmenting(FastModel.call)


@keras.saving.register_keras_serializable(package="keras_fastrain")
class FunctionalFastModel(FastModel, _keras_internals.Functional):
    """What `FastModel(inputs, outputs)` returns: a functional FastModel."""

    call = _keras_internals.Functional.call

    def __init__(self, inputs, outputs, *args, pruning=None, **kwargs):
        if pruning is not None:
            graph = _keras_internals.Functional(inputs, outputs)
            if not pruning_wrappers(graph):  # a loaded model has its wrappers already
                pruned = prune_low_magnitude(graph, **_pruning_arguments(pruning))
                inputs, outputs = pruned.inputs, pruned.outputs
        super().__init__(inputs, outputs, *args, **kwargs)


@keras.saving.register_keras_serializable(package="keras_fastrain")
class FastSequential(FastModel, keras.Sequential):
    """`keras.Sequential` as a FastModel: `FastSequential([layers], **options)`.

    Args:
        layers: List of layers (a `keras.Input` may come first), or `None`
            to `add()` them later. Defaults to `None`.
        pruning: `None` (default), a pruning schedule, or a dict of
            `prune_low_magnitude`'s arguments, as for `FastModel`. The
            prunable layers in `layers` are wrapped at construction; layers
            added later with `add()` are not.
        *args: `keras.Sequential`'s other positional arguments (`trainable`,
            `name`).
        **kwargs: `FastModel`'s options (`distribute`, `augmentation`,
            `mixed_precision`, `jit_compile`, `steps_per_execution`,
            `input_pipeline`) and `keras.Sequential`'s keyword arguments
            (`trainable`, `name`).

    Example:

    ```python
    model = keras_fastrain.FastSequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        augmentation={"rotation_range": 10},
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5)
    ```
    """

    call = keras.Sequential.call

    def __init__(self, layers=None, *args, pruning=None, **kwargs):
        if pruning is not None and not layers:
            raise ValueError(
                "Invalid value for argument `layers`. Received: layers=None with pruning. "
                "Expected the layers at construction: FastSequential wraps them for pruning "
                "then, and layers added later with add() would not be pruned."
            )
        if pruning is not None and layers:
            graph = keras.Sequential(layers)
            if not pruning_wrappers(graph):
                graph = prune_low_magnitude(graph, **_pruning_arguments(pruning))
            built = graph.built and graph.inputs  # a Sequential without an Input has none
            layers = [*graph.inputs[:1], *graph.layers] if built else graph.layers
        super().__init__(layers, *args, **kwargs)


@keras.saving.register_keras_serializable(package="keras_fastrain")
class WrappedFastModel(FastModel):
    """What `FastModel(model)` returns: FastModel around an existing model.

    The existing model's layers and weights are used as they are (not
    copied); its compile state is not, so compile the FastModel.
    """

    def __init__(self, model, pruning=None, **kwargs):
        if not isinstance(model, keras.Model):
            raise TypeError(
                "Invalid value for argument `model`. "
                f"Received: model={model!r}. Expected a keras.Model."
            )
        kwargs.setdefault("name", f"fast_{model.name}")
        if pruning is not None and not pruning_wrappers(model):
            model = prune_low_magnitude(model, **_pruning_arguments(pruning))
        super().__init__(**kwargs)
        self.model = model
        if model.built:
            self.built = True

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        return super().from_config(config, custom_objects=custom_objects)


def _pruning_arguments(pruning):
    """`prune_low_magnitude`'s keyword arguments from FastModel's `pruning=`."""
    if isinstance(pruning, dict):
        return pruning
    if callable(pruning):
        return {"pruning_schedule": pruning}
    raise TypeError(
        f"Invalid value for argument `pruning`. Received: pruning={pruning!r}. Expected "
        "a pruning schedule (e.g. keras_fastrain.pruning.PolynomialDecay) or a dict of "
        "prune_low_magnitude's arguments."
    )


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


def _batch_size_finder(batch_size):
    """The `BatchSizeFinder` that `batch_size` asks for, else `None`."""
    if isinstance(batch_size, BatchSizeFinder):
        return batch_size
    if batch_size == AUTO:
        return BatchSizeFinder()
    if batch_size is None or (
        isinstance(batch_size, (int, np.integer))
        and not isinstance(batch_size, bool)
        and batch_size >= 1
    ):
        return None
    raise ValueError(
        f"Invalid value for argument `batch_size`. Received: batch_size={batch_size!r}. "
        "Expected an integer >= 1, None, 'auto' or a keras_fastrain.batching."
        "BatchSizeFinder."
    )


def _feeders(engine):
    """How many processes each feed a share of every global batch."""
    return 1 if engine.feeds_global_batch() else engine.size


def _give_data(callback, data):
    """Hands the dataset `fit` trains on to an `AdaptiveBatchSize` without one."""
    if callback.data is None and isinstance(data, ResizableBatches):
        callback.data = data
    elif callback.data is not None and callback.data is not data:
        raise ValueError(
            "AdaptiveBatchSize was given a different dataset than the one fit trains "
            "on: pass the same ResizableDataset to both, or data=None to FastModel."
        )


def _split_validation(x, y, kwargs):
    """Takes `validation_split` off the end of the arrays, as Keras does,
    into `kwargs["validation_data"]`; returns the training `x`, `y`."""
    fraction = kwargs.pop("validation_split", 0.0) or 0.0
    check_float("validation_split", fraction, low=0.0, high=1.0, closed=(True, False))
    if not fraction or kwargs.get("validation_data") is not None:
        return x, y  # Keras, too, prefers validation_data
    split_at = math.floor(_sample_count(x) * (1.0 - fraction))
    head = slice(0, split_at)
    tail = slice(split_at, None)
    weights = kwargs.get("sample_weight")
    kwargs["validation_data"] = tuple(
        part for part in (shard(x, tail), shard(y, tail), shard(weights, tail)) if part is not None
    )
    if weights is not None:
        kwargs["sample_weight"] = shard(weights, head)
    return shard(x, head), shard(y, head)


def _is_tf_dataset(x):
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "shard")


def _sample_count(x):
    """The number of samples in array inputs, or `None` for datasets."""
    if x is None or isinstance(x, keras.utils.PyDataset):
        return None
    arrays = keras.tree.flatten(x)
    if not arrays or not all(isinstance(a, np.ndarray) for a in arrays):
        return None
    return len(arrays[0])


def _input_shape(model):
    """The model's single input shape if known, else `None`."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        wrapped = getattr(model, "model", None)
        inputs = getattr(wrapped, "inputs", None) if isinstance(wrapped, keras.Model) else None
    if inputs and len(inputs) == 1:
        return tuple(inputs[0].shape)
    return None
