"""The batch-size part: search the batch size, and serve a batch that grows.

`fit(batch_size="auto")` (or a `BatchSizeFinder`) measures first, within a
time budget, the batch with the best goodput (samples per second times
statistical efficiency), on array inputs or a `ResizableDataset`, and
trains with it, the learning rate scaled from the base batch's (and put
back after the fit); the search is kept in `model.batch_size_search`. With an
`AdaptiveBatchSize` callback, array inputs are served by a
`ResizableDataset` whose batch grows (`validation_split` is taken from the
arrays first, as Keras does), and a `keras.utils.PyDataset` or a batched
`tf.data.Dataset` by a `GroupedBatches` or `TFDataBatches`, which grow by
whole batches of their own. While the batch grows on TensorFlow, the part
asks for no XLA: XLA would compile the step again for every batch size,
while TensorFlow's graph takes any batch size as it is.
"""

import functools
import math

import keras
import numpy as np

from keras_fastrain import choices, setup_time
from keras_fastrain.batching.finder import BatchSizeFinder
from keras_fastrain.batching.grouped import GroupedBatches
from keras_fastrain.batching.resizable import ResizableBatches, ResizableDataset
from keras_fastrain.batching.tf_data_batches import TFDataBatches
from keras_fastrain.callbacks.adaptive_batch_size import AdaptiveBatchSize
from keras_fastrain.callbacks.learning_rate import rate_during
from keras_fastrain.devices import host_array
from keras_fastrain.distribute import Engine
from keras_fastrain.distribute.sharding import shard
from keras_fastrain.parts.base import Constraint, Part
from keras_fastrain.parts.engine import engine_scope
from keras_fastrain.parts.inputs import is_tf_dataset, sample_count
from keras_fastrain.parts.workers import feeders, worker_share
from keras_fastrain.scaling import rate_comes_from_schedule, scaled_learning_rate
from keras_fastrain.validation import AUTO, check_float

__all__ = ["BatchSizePart", "batch_size_finder"]


class BatchSizePart(Part):
    """Searches the batch size when asked; serves growing batches."""

    name = "batch_size"

    def constraints(self, plan):
        if getattr(plan, "method", None) != "fit" or keras.backend.backend() != "tensorflow":
            return ()
        if not _growth(plan):
            return ()
        return (
            Constraint(
                "jit_compile",
                False,
                "while AdaptiveBatchSize grows the batch: XLA would compile the step "
                "again for every batch size",
                self.name,
            ),
        )

    def on_run(self, plan):
        if plan.method != "fit":
            return
        growth = _growth(plan)
        plan.batch_size_varies = bool(growth)
        _plan_batches(plan, growth)
        for callback in growth:
            _give_data(callback, plan.x)


def batch_size_finder(batch_size):
    """The `BatchSizeFinder` that `fit`'s `batch_size` asks for, else `None`."""
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


def _growth(plan):
    return [c for c in plan.callbacks if isinstance(c, AdaptiveBatchSize)]


def _plan_batches(plan, growth):
    """Searches the batch size when asked (`"auto"`, a finder, or
    `AdaptiveBatchSize(max_batch_size="auto")`), and wraps arrays in a
    `ResizableDataset` for `growth`; sets the plan's `x`, `y`, `batch_size`
    and `global_batch_size`."""
    x, y, batch_size, kwargs = plan.x, plan.y, plan.batch_size, plan.kwargs
    finder = batch_size_finder(batch_size)
    capped = [c for c in growth if c.max_batch_size == AUTO]
    if finder is None and not growth:
        return
    for callback in growth:  # no bound from an earlier fit's search
        callback.limit_to_search(None)
    engine = plan.engine or Engine()
    resizable = isinstance(x, ResizableDataset)
    searching = finder is not None or capped
    if resizable:
        arrays = (x.x, x.y, x.sample_weight)
    elif isinstance(x, keras.utils.PyDataset) and not searching:
        # A PyDataset grows by whole batches of its own.
        plan.x = x if isinstance(x, ResizableBatches) else GroupedBatches(x)
        plan.y = plan.batch_size = None
        return
    elif is_tf_dataset(x) and not searching:  # so does a tf.data dataset
        plan.x = TFDataBatches(worker_share(engine, x, None, None)[0])
        plan.y = plan.batch_size = None
        return
    elif sample_count(x) is not None:
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
        search = _search(plan, finder, *arrays, own_share=resizable)
        _scale_learning_rate(plan, finder, search)
        batch_size = search.batch_size
        for callback in growth:
            callback.limit_to_search(search.max_batch_size)
    elif resizable:
        batch_size = x.batch_size * feeders(engine)
    if capped:  # grow from the start up to the fastest batch
        start = BatchSizeFinder(min_batch_size=batch_size or 32, objective="throughput")
        search = _search(plan, start, *arrays, own_share=resizable)
        for callback in capped:
            callback.limit_to_search(search.batch_size)
    plan.global_batch_size = batch_size
    if resizable:
        x.batch_size = batch_size // feeders(engine)
        plan.x, plan.y, plan.batch_size = x, None, None
        return
    if not growth:
        plan.x, plan.y, plan.batch_size = x, y, batch_size
        return
    batch_size = plan.global_batch_size = batch_size or 32
    if kwargs.get("validation_batch_size") is None:
        kwargs["validation_batch_size"] = batch_size
    x, y, local_batch = worker_share(engine, x, y, batch_size, kwargs)
    plan.x = ResizableDataset(
        x,
        y,
        kwargs.pop("sample_weight", None),
        batch_size=local_batch,
        shuffle=kwargs.pop("shuffle", True) is not False,
        # Workers that each read every global batch must shuffle alike.
        seed=int(engine.broadcast(np.random.randint(2**31))) if engine.size > 1 else None,
        multiple_of=engine.num_replicas if engine.feeds_global_batch() else 1,
    )
    plan.y = plan.batch_size = None


def _search(plan, finder, x, y, sample_weight, own_share=False):
    """Runs `finder` on the model (each worker on its share of the arrays,
    unless they are its `own_share` already); keeps the result in
    `model.batch_size_search` and decides the `batch_size` choice."""
    model = plan.model
    engine = plan.engine or Engine()
    if feeders(engine) > 1 and not own_share:
        weights = {"sample_weight": sample_weight}
        x, y, _ = worker_share(engine, x, y, engine.size, weights)
        sample_weight = weights["sample_weight"]
    replicas = engine.num_replicas if engine.feeds_global_batch() else 1
    epochs = max(1, plan.kwargs.get("epochs", 1) - plan.kwargs.get("initial_epoch", 0))
    # The measured steps train the model, unless they would train under a
    # loss other than the fit's (`class_weight` is not given to them).
    keep = plan.kwargs.get("class_weight") is None
    if keep:
        plan.keep_start(x)
    with engine_scope(model, plan.engine), setup_time.counted(model, "batch-size search"):
        # Keras's own fit: FastModel's would apply the parts again.
        keras_fit = functools.partial(keras.Model.fit, model)
        search = finder.find(
            model,
            x,
            y,
            sample_weight,
            multiple_of=replicas,
            fit=keras_fit,
            epochs=epochs,
            keep_training=keep,
        )
    model.batch_size_search = search
    plan.decide(choices.Choice("batch_size", search.batch_size, search.summary()))
    return search


def _scale_learning_rate(plan, finder, search):
    """Trains a searched batch larger than the base at the optimizer's rate
    scaled by the finder's rule (the rate is taken as tuned for the base
    batch), and puts the rate back after the fit."""
    base, chosen = search.base_batch_size, search.batch_size
    optimizer = plan.model.optimizer
    if chosen == base or finder.learning_rate_rule is None:
        return
    if rate_comes_from_schedule(optimizer):
        plan.decide(
            choices.Choice(
                "learning_rate",
                "schedule",
                f"kept: batch {chosen} is {chosen / base:g}x the base batch {base}, and "
                "the optimizer's rate comes from a LearningRateSchedule, which is not "
                "rescaled; scale it yourself, or pass BatchSizeFinder(learning_rate_rule=None)",
            )
        )
        return
    rate = float(host_array(optimizer.learning_rate))
    scaled = scaled_learning_rate(rate, base, chosen, rule=finder.learning_rate_rule)
    plan.hold(rate_during(plan.model, scaled))
    plan.decide(
        choices.Choice(
            "learning_rate",
            scaled,
            f"{rate:.3g} (taken as tuned for the base batch {base}) scaled by the "
            f"{finder.learning_rate_rule} rule to batch {chosen}; put back after the fit",
            changes_results=True,
        )
    )


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
    split_at = math.floor(sample_count(x) * (1.0 - fraction))
    head = slice(0, split_at)
    tail = slice(split_at, None)
    weights = kwargs.get("sample_weight")
    kwargs["validation_data"] = tuple(
        part for part in (shard(x, tail), shard(y, tail), shard(weights, tail)) if part is not None
    )
    if weights is not None:
        kwargs["sample_weight"] = shard(weights, head)
    return shard(x, head), shard(y, head)
