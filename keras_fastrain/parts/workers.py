"""The workers part: what several worker processes need to train as one.

`batch_size` is the global batch on every engine. Where each worker feeds
its own share (Horovod, JAX multi-process), array inputs are split so that
each worker trains on its part of every global batch, and a `tf.data`
dataset's batches are dealt out in turn. Where workers train apart
(Horovod), `fit` gets the same start (`BroadcastGlobalVariablesCallback`)
and averaged epoch metrics (`MetricAverageCallback`), and `evaluate`
returns the workers' mean; wherever workers could disagree, an
`AgreementGuard` checks that they do not.
"""

import keras

from keras_fastrain.batching.replica_batches import replica_batches
from keras_fastrain.batching.resizable import ResizableBatches
from keras_fastrain.callbacks.agreement import AgreementGuard
from keras_fastrain.callbacks.distributed import (
    BroadcastGlobalVariablesCallback,
    HorovodCallback,
    MetricAverageCallback,
)
from keras_fastrain.distribute.sharding import shard, shard_dataset, worker_rows
from keras_fastrain.parts.base import Part
from keras_fastrain.parts.inputs import is_tf_dataset, sample_count

__all__ = ["WorkersPart", "feeders", "worker_share"]


class WorkersPart(Part):
    """Gives each worker its share and the callbacks workers need."""

    name = "workers"

    def on_run(self, plan):
        engine = plan.engine
        if plan.method == "predict" or engine is None:
            return
        if plan.global_batch_size is None:
            plan.global_batch_size = plan.batch_size
        plan.x, plan.y, plan.batch_size = worker_share(
            engine, plan.x, plan.y, plan.batch_size, plan.kwargs
        )
        if plan.method == "fit":
            _share_validation(plan)
        count = sample_count(plan.x)
        if count is not None and not plan.kwargs.get("validation_split"):
            engine.check_batches(count, plan.batch_size or 32)
        if plan.method == "evaluate":
            if not engine.averages_gradients and engine.size > 1:
                # Workers that train apart also measured apart: their mean.
                plan.results.append(
                    lambda results: keras.tree.map_structure(
                        lambda v: engine.allreduce(v, "mean"), results
                    )
                )
            return
        _add_worker_callbacks(engine, plan.callbacks)
        engine.before_fit()
        if isinstance(plan.x, ResizableBatches) and engine.name == "multi_worker":
            plan.x = replica_batches(engine.strategy, plan.x)  # see its module


def feeders(engine):
    """How many processes each feed a share of every global batch."""
    return 1 if engine.feeds_global_batch() else engine.size


def worker_share(engine, x, y, batch_size, kwargs=None):
    """This worker's share of `x`, `y` (and `kwargs`' sample weights), and
    its batch size, when each worker feeds its own part."""
    if engine is None or engine.size == 1 or engine.feeds_global_batch():
        return x, y, batch_size
    if is_tf_dataset(x):
        return shard_dataset(x, engine.rank, engine.size), y, batch_size
    count = sample_count(x)
    if count is None:  # a PyDataset or generator: the user's data is per worker
        return x, y, batch_size
    rows = worker_rows(count, batch_size or 32, engine.rank, engine.size)
    if kwargs is not None and kwargs.get("sample_weight") is not None:
        kwargs["sample_weight"] = shard(kwargs["sample_weight"], rows)
    return shard(x, rows), shard(y, rows), (batch_size or 32) // engine.size


def _share_validation(plan):
    kwargs = plan.kwargs
    validation = kwargs.get("validation_data")
    if isinstance(validation, (tuple, list)) and 2 <= len(validation) <= 3:
        global_batch = plan.global_batch_size
        val_x, val_y, val_batch = worker_share(
            plan.engine,
            validation[0],
            validation[1],
            kwargs.get("validation_batch_size") or global_batch,
        )
        kwargs["validation_data"] = (val_x, val_y, *validation[2:])
        if kwargs.get("validation_batch_size"):
            kwargs["validation_batch_size"] = val_batch
    elif validation is not None:
        kwargs["validation_data"] = worker_share(plan.engine, validation, None, None)[0]


def _add_worker_callbacks(engine, callbacks):
    """Adds what an engine whose workers train apart needs (Horovod): the
    same start, and epoch metrics averaged first; on every engine whose
    workers could disagree, the agreement check."""
    if engine.size == 1:
        return
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
