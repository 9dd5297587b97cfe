"""Every use of Keras's private API in keras-fastrain, in one place.

Each function says which upstream gap it works around and which versions it
was checked on (Keras 3.15.1, TensorFlow 2.21, JAX 0.10). When Keras offers a
public way, the function is replaced here and nowhere else changes.
"""

import inspect
import sys
import weakref

import keras
from keras.src.backend import set_keras_mask
from keras.src.models.functional import Functional
from keras.src.models.model import functional_init_arguments

# `keras.Model(inputs, outputs)` returns a `Functional`. A `keras.Model`
# subclass called that way has its class's *bases rewritten* in place
# (`inject_functional_model_class`), which breaks every later subclass of it
# (keras#17270). FastModel therefore dispatches functional arguments to a
# fixed subclass of `Functional` itself; both names are needed for that.
__all__ = [
    "declare_training_argument",
    "monitor_direction_from_model",
    "Functional",
    "functional_init_arguments",
    "all_layers",
    "recreate_tf_variable",
    "set_tf_trainer_strategy",
    "tf_optimizer_strategy",
    "relayout_jax_variable",
    "optimizer_slots",
    "fix_multi_worker_fit",
    "prime_saving_caches",
    "saving_cache_missing",
    "sync_jax_state",
    "evaluate_fit_validation",
    "guard_average_at_fit_end",
    "hold_average_at_fit_end",
    "renew_jax_state",
    "set_running_fit_steps",
    "compile_arguments",
    "set_loss_mask",
    "loss_function_arguments",
]


def all_layers(model):
    """Every layer in `model`, nested ones included, `model` first.

    Keras's walk (`Layer._flatten_layers`) also finds layers held by custom
    layers, which `model.layers` does not list; no public equivalent exists.
    """
    return list(model._flatten_layers(include_self=True, recursive=True))


def recreate_tf_variable(variable, strategy):
    """Re-creates a Keras variable's `tf.Variable` under `strategy`, in place.

    A `tf.distribute` strategy only trains variables created in its scope;
    Keras's answer is "build the model under `strategy.scope()`" (the TF
    trainer records the strategy in `Trainer.__init__`), and a model built
    outside fails in the optimizer (`AssertionError` in
    mirrored_strategy.py, or "colocate_vars_with must only be passed a
    variable created in this tf.distribute.Strategy.scope()"). Keras has no
    public way to move a variable, so its backing value is dropped and
    re-initialized, under the scope, from its current value: the
    `KerasVariable` object (which layers and optimizers hold) stays the same.

    Returns:
        True if the variable was re-created, False if it already lived
        under `strategy`.
    """
    value = variable._value
    if value is None or strategy.extended.variable_created_in_scope(value):
        return False
    current = value.numpy()
    with strategy.scope():
        variable._value = None
        variable._initialize(current)
    return True


def relayout_jax_variable(variable, device_mesh, make_value=None):
    """Replicates a JAX Keras variable over `device_mesh`, in place.

    Under `keras.distribution.DataParallel` every variable must live on the
    mesh's devices; one created before the distribution was set stays on a
    single device and the jitted step fails with "Received incompatible
    devices for jitted computation". Keras sets a variable's layout only when
    it is created; this sets the replicated layout and re-places the value.

    With several processes, `make_value(variable)` (equal on every process)
    replaces the variable's process-local value.

    Returns:
        True if the variable was moved, False if it was already on the mesh.
    """
    import jax

    if variable._value is None:
        return False
    sharding = variable.value.sharding
    mesh = device_mesh.backend_mesh
    if isinstance(sharding, jax.sharding.NamedSharding) and sharding.mesh == mesh:
        return False
    variable._layout = keras.distribution.TensorLayout([None] * len(variable.shape), device_mesh)
    variable._direct_assign(variable.value if make_value is None else make_value(variable))
    return True


def set_tf_trainer_strategy(model, strategy):
    """Tells Keras's TensorFlow trainer which strategy `model` trains under.

    The trainer records the strategy only in `Trainer.__init__`, when one is
    entered then (keras/src/backend/tensorflow/trainer.py). Without it,
    `fit` defers building the optimizer into the first traced step, inside
    the replica context, and a MirroredStrategy step fails ("You must feed
    a value for placeholder tensor ..."). No public setter exists.
    """
    model._distribute_strategy = strategy


def tf_optimizer_strategy(optimizer):
    """The `tf.distribute` strategy a TensorFlow-backend optimizer was made under.

    Keras's TensorFlow optimizer records the strategy entered when it is
    created (`TFOptimizer.__init__` in keras/src/backend/tensorflow/optimizer.py
    stores `tf.distribute.get_strategy()` in `_distribution_strategy`) and
    creates and updates its variables through that strategy from then on; an
    optimizer made outside a strategy's scope cannot train under it. Keras
    exposes no accessor (its own `SwapEMAWeights` callback reads the attribute;
    no upstream issue asks for one). Checked on Keras 3.15.1 with TensorFlow
    2.21.

    Returns:
        The strategy, or `None` for an optimizer of another backend.
    """
    return getattr(optimizer, "_distribution_strategy", None)


def optimizer_slots(optimizer, variable):
    """The optimizer variables that hold per-entry state for `variable`.

    Pruning zeroes these for the entries it masks, so that momentum or a
    moving average cannot move a pruned weight off zero. Keras has no public
    map from a trainable variable to its slots: every built-in optimizer keeps
    them in lists ordered like its trainable variables (`_momentums`,
    `_velocities`, the EMA copies, the gradient accumulators, ...), found with
    `_get_variable_index`. Slots of another shape (Adafactor's factored
    moments) are not per entry and are left out. Checked on Keras 3.15.1.
    """
    inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer
    if inner is not None:
        return optimizer_slots(inner, variable)
    if not optimizer.built:
        return []
    index = optimizer._get_variable_index(variable)
    count = len(optimizer._trainable_variables)
    slots = []
    for value in vars(optimizer).values():
        if isinstance(value, list) and len(value) == count:
            slot = value[index]
            if (
                isinstance(slot, keras.Variable)
                and slot is not variable
                and tuple(slot.shape) == tuple(variable.shape)
            ):
                slots.append(slot)
    return slots


_multi_worker_fit_fixed = False


def fix_multi_worker_fit():
    """Makes Keras's `fit` work under `tf.distribute.MultiWorkerMirroredStrategy`.

    keras#20585 (open; checked on Keras 3.15.1 with TensorFlow 2.21): with
    several workers `fit` fails twice in keras/src/backend/tensorflow/trainer.py.
    `TensorFlowTrainer._maybe_symbolic_build` averages the first batch over
    the replicas with `strategy.reduce("MEAN", batch, axis=None)` just to get
    its shapes ("Attempt to convert a value (PerReplica...)"), and
    `reduce_per_replica` then averages the step's scalar logs with
    `strategy.reduce("MEAN", v, axis=0)` ("Invalid reduction dimension 0 for
    input with 0 dimensions"). Under that strategy only, this builds from the
    first replica's share of the batch and reduces the logs with
    `axis=None`; every other strategy keeps Keras's code. Idempotent.
    """
    global _multi_worker_fit_fixed
    if _multi_worker_fit_fixed:
        return
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    def is_multi_worker(strategy):
        return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    keras_symbolic_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if not is_multi_worker(strategy) or iterator is None:
            return keras_symbolic_build(self, iterator, data_batch)
        for _, _, batches in iterator:
            batch = next(batches)
            break
        batch = tf.nest.map_structure(
            lambda v: (
                strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues)
                else v
            ),
            batch,
        )
        with strategy.scope():
            self._symbolic_build(data_batch=batch)

    keras_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if not is_multi_worker(strategy) or reduction not in ("auto", "mean"):
            return keras_reduce(values, strategy, reduction)
        return tf.nest.map_structure(
            lambda v: (
                strategy.reduce("MEAN", v, axis=None)
                if isinstance(v, tf.distribute.DistributedValues)
                else v
            ),
            values,
        )

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    _multi_worker_fit_fixed = True


def sync_jax_state(model):
    """Puts the variables' values back into the variables during a JAX `fit`.

    Keras's JAX trainer holds the state in its own arrays between steps
    (keras/src/backend/jax/trainer.py); `jax_state_sync`, an undocumented
    method of the model (checked on Keras 3.15.1), writes it back, and the
    next step then reads the variables again. A callback that reads or
    assigns variables calls this first. Elsewhere it does nothing.
    """
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def evaluate_fit_validation(model):
    """Evaluates `model` again on the validation data of the `fit` it is
    in, from a callback's `on_epoch_end`; returns the dict of its metrics.

    Keras's `fit` keeps the validation batches it made in
    `model._eval_epoch_iterator` and evaluates them with the undocumented
    `evaluate(_use_cached_eval_dataset=True)` (keras/src/backend/*/
    trainer.py, on every backend; checked on Keras 3.15.1); the callbacks
    do not see the validation data otherwise. `MeasuredEMA` scores the
    last weights with it after the fit's validation scored the average.
    """
    if getattr(model, "_eval_epoch_iterator", None) is None:
        raise RuntimeError("evaluate_fit_validation runs only after a fit's validation.")
    return model.evaluate(verbose=0, return_dict=True, _use_cached_eval_dataset=True)


def guard_average_at_fit_end(optimizer):
    """Lets keras-fastrain decide whether a `fit` ends by writing the
    optimizer's moving average of the weights (`use_ema`) into the weights,
    and keeps the averages in buffers of their own on JAX.

    Keras ends every `fit` with `optimizer.finalize_variable_values`, which
    overwrites the weights with the average when `use_ema` is on
    (keras/src/optimizers/base_optimizer.py, checked on Keras 3.15.1): also
    the short fits of keras-fastrain's measurements, and the fits where
    `MeasuredEMA` dropped the average. That method is wrapped on this
    instance: it is skipped while `optimizer._fastrain_hold_average` (set by
    keras-fastrain, a callable) returns True. Turning `use_ema` off instead
    would change the optimizer a checkpoint saves and leave steps compiled
    meanwhile without the average.

    On JAX an assignment keeps the very array, so after the overwrite the
    weight and its average share one buffer, and the next `fit`'s compiled
    step, which donates its state, fails with "Attempt to donate the same
    buffer twice" (then `'NoneType' object is not callable`). Each average
    gets a copy now and after every finalize that wrote it into the weights.
    `_model_variables_moving_average` is undocumented.
    """
    if not getattr(optimizer, "use_ema", False):
        return
    reference = weakref.ref(optimizer)  # the wrapper must not keep it alive

    def copy_averages():  # built with the optimizer, maybe after this call
        if keras.backend.backend() != "jax" or reference() is None:
            return
        for average in getattr(reference(), "_model_variables_moving_average", None) or []:
            average.assign(keras.ops.copy(average.value))

    copy_averages()
    if getattr(optimizer, "_fastrain_average_guarded", False):
        return
    finalize = optimizer.finalize_variable_values

    def finalize_variable_values(var_list):
        hold = getattr(reference(), "_fastrain_hold_average", None)
        if hold is None or not hold():
            finalize(var_list)
            copy_averages()

    optimizer.finalize_variable_values = finalize_variable_values
    optimizer._fastrain_average_guarded = True


def hold_average_at_fit_end(optimizer, hold):
    """Sets whether the `fit`s of `optimizer` end without writing its
    average into the weights: `hold` is a callable returning a bool, read
    as each fit ends, or `None` (Keras's behaviour). Installs the guard
    (`guard_average_at_fit_end`) first if needed."""
    guard_average_at_fit_end(optimizer)
    optimizer._fastrain_hold_average = hold


def renew_jax_state(model):
    """Rebuilds the state Keras's JAX trainer holds during a `fit` after the
    list of trainable variables changed (layers frozen), in the new order.

    The trainer keeps the last step's values in `model._jax_state` (lists
    matched to `model.trainable_variables` etc. by position; an undocumented
    attribute, checked on Keras 3.15.1). After `sync_jax_state` the next step
    reads the variables again, in the new order, but if that step fails, the
    trainer's closing sync would write the old lists into the new order. The
    state is rebuilt from the variables just synced. Elsewhere it does
    nothing.
    """
    if not getattr(model, "_jax_state", None):
        return
    model._jax_state = {
        "trainable_variables": [v.value for v in model.trainable_variables],
        "non_trainable_variables": [v.value for v in model.non_trainable_variables],
        "optimizer_variables": [v.value for v in model.optimizer.variables],
        "metrics_variables": [v.value for v in model.metrics_variables],
    }


def declare_training_argument(function, signature):
    """Declares a keyword-only `training=None` on `function`'s signature.

    Keras passes `training` to a model's `call` only when `call`'s signature
    names it: `Layer.__init__` reads `inspect.signature(self.call)` into
    `_call_has_training_arg`, and both the JAX trainer (`stateless_call`)
    and `Layer.__call__` consult it (keras/src/layers/layer.py; checked on
    Keras 3.15.1). FastModel's augmentation must know whether the step
    trains, so its wrapper of a `call` without `training` declares one; the
    wrapped `call` itself is called without it.

    Args:
        function: The wrapper whose `__signature__` is set.
        signature: The wrapped `call`'s `inspect.Signature`.
    """
    parameters = list(signature.parameters.values())
    training = inspect.Parameter("training", inspect.Parameter.KEYWORD_ONLY, default=None)
    at = len(parameters)
    if parameters and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD:
        at -= 1
    parameters.insert(at, training)
    function.__signature__ = signature.replace(parameters=parameters)


def monitor_direction_from_model(callback):
    """Sets a `keras.callbacks.EarlyStopping` (sub)class's `monitor_op` from
    the direction of the compiled metric its `monitor` names, as Keras's
    `mode="auto"` does for a name it does not know.

    Keras keeps that lookup in a private method of its `MonitorCallback`
    (`_set_monitor_op`, keras/src/callbacks/monitor_callback.py; checked on
    Keras 3.15.1) and offers no public one; keras-fastrain's EarlyStopping
    uses it for metric names it has no direction for.

    Raises:
        ValueError: when no compiled metric of that name says a direction.
    """
    callback._set_monitor_op()


def prime_saving_caches():
    """Makes Keras's saving create no variables, so one worker can save alone.

    Checked on Keras 3.15.1 with TensorFlow 2.21 (no upstream issue yet):
    every `model.save` builds a throwaway `Optimizer(1.0)` in
    `keras/src/saving/saving_lib.py::get_attr_skipset` to learn which
    attributes to skip. Its cache never hits: it stores the answer under
    `saving_attr_skipset_<type>` and looks it up under
    `saving_attr_skiplist_<type>`. Under `MultiWorkerMirroredStrategy`
    creating that optimizer's variables is a collective (the chief
    broadcasts their initial values), so a save on rank 0 only, Horovod's
    checkpoint idiom, leaves the other workers out and the next collective
    fails ("Collective instance ... expected type 0 ... got type 1"); the
    same holds under JAX multi-process. This computes every answer anew
    (so every worker creates the same variables, whatever its cache held)
    and stores it under the key Keras reads; call it on every worker
    together. Keras's global state is per thread and
    `keras.backend.clear_session()` empties it: `saving_cache_missing()`
    tells when to call it again.
    """
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    for obj_type in _SAVING_TYPES:
        key = f"saving_attr_skiplist_{obj_type}"
        global_state.set_global_attribute(key, None)  # recomputed on every worker alike
        global_state.set_global_attribute(key, saving_lib.get_attr_skipset(obj_type))


def saving_cache_missing():
    """Whether Keras's saving would create variables here now (see
    `prime_saving_caches`): some answer is not cached under the key it reads."""
    from keras.src.backend.common import global_state

    return any(
        global_state.get_global_attribute(f"saving_attr_skiplist_{obj_type}") is None
        for obj_type in _SAVING_TYPES
    )


_SAVING_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer")


def set_running_fit_steps(steps):
    """Tells the `fit` that is running that each epoch now has `steps` batches.

    Keras counts an epoch's batches once, when `fit` starts
    (`EpochIterator._num_batches`, keras/src/trainers/epoch_iterator.py), and
    hands that count to the callbacks (`params["steps"]`, which the progress
    bar copies in `set_params`). A dataset whose batch size changes between
    epochs (asked for in keras#8432, keras#10143) would then run out of data
    ("Your input ran out of data") or stop short, under a wrong progress bar.
    Keras passes neither object to callbacks: both are locals of the
    backend's `fit`, found here by walking up the calling frames from the
    callback's `on_epoch_begin`. Call it only from there, before the epoch
    reads its data. Checked on Keras 3.15.1 with the TensorFlow, JAX and
    torch trainers.

    Raises:
        RuntimeError: if no running `fit` is found up the call stack.
    """
    from keras.src.callbacks.callback_list import CallbackList
    from keras.src.trainers.epoch_iterator import EpochIterator

    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "fit":
            iterator = frame.f_locals.get("epoch_iterator")
            callbacks = frame.f_locals.get("callbacks")
            if isinstance(iterator, EpochIterator) and isinstance(callbacks, CallbackList):
                iterator._num_batches = steps
                params = dict(callbacks.params or {})
                params["steps"] = steps
                callbacks.set_params(params)
                return
        frame = frame.f_back
    raise RuntimeError(
        "The batch size can only change inside `model.fit` (from a callback's "
        f"on_epoch_begin); no running fit of Keras {keras.__version__} was found."
    )


def compile_arguments(model):
    """The arguments `model.compile` was called with, as the live objects.

    `Model.get_compile_config()` serializes them, and deserializing fails
    for a loss or metric that is a plain or lambda function not registered
    with Keras ("Could not locate function"), and drops `auto_scale_loss`.
    Keras keeps the live arguments in `model._compile_config.config`
    (keras/src/trainers/trainer.py, `Trainer.compile`); no public accessor
    exists. Checked on Keras 3.15.1. Returns `None` for a model never
    compiled.
    """
    config = getattr(model, "_compile_config", None)
    return None if config is None else dict(config.config)


def set_loss_mask(loss, mask):
    """Marks which entries of a per-entry loss count, so that Keras's
    reduction averages over those only, as Keras's own sparse loss does with
    `ignore_class`. Keras has no public setter for the mask a loss carries
    (`keras.src.backend.set_keras_mask`, checked on Keras 3.15.1)."""
    set_keras_mask(loss, mask=mask)


def loss_function_arguments(loss):
    """The keyword arguments a Keras loss class passes to its function
    (`axis`, `from_logits`, ...): Keras's `SparseCategoricalCrossentropy`
    leaves `axis` out of its config, so a copy made from the config alone
    would lose it (`LossFunctionWrapper._fn_kwargs`, Keras 3.15.1)."""
    return dict(getattr(loss, "_fn_kwargs", {}))
