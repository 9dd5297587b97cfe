"""`replica_batches`: a resizable dataset's global batches, split over the
replicas of a `tf.distribute` strategy whose replicas span several workers.

Under MultiWorkerMirroredStrategy, Keras turns a `keras.utils.PyDataset`
into a `tf.data` pipeline of unknown batch size, which TensorFlow then
deals out by whole batches: each worker trains on different full-size
batches and runs out of data half way through the epoch Keras counted.
Here every worker builds its own pipeline
(`strategy.distribute_datasets_from_function`) that reads each global
batch and keeps its own replicas' rows of it. So the global batch is the
dataset's, the same rows train as on one worker, every worker takes the
same number of steps, and the batch size may change between epochs
(`AdaptiveBatchSize` tells `fit` the new number of steps).
"""

import keras
import numpy as np

__all__ = ["replica_batches"]


def replica_batches(strategy, data):
    """`data`'s global batches as a distributed dataset for `strategy`.

    Each of the `strategy`'s replicas gets an equal, consecutive part of
    every batch (rows that do not split evenly, at most one fewer than the
    replicas, are left out of that batch). Every pass over `data` calls its
    `on_epoch_begin` first (and `on_epoch_end` of the pass before), as
    Keras does for a `PyDataset`.

    Args:
        strategy: A `tf.distribute.Strategy`.
        data: A `keras_fastrain.batching.ResizableBatches` (the same
            batches on every worker, as Keras expects of a global dataset).

    Returns:
        A `tf.distribute.DistributedDataset` of `data`'s batches split per
        replica; it reads `data` afresh on every iteration.
    """
    import tensorflow as tf

    signature = keras.tree.map_structure(
        lambda a: tf.TensorSpec((None, *np.shape(a)[1:]), tf.as_dtype(np.asarray(a).dtype)),
        data[0],
    )

    def dataset_for(context):
        replicas = context.num_replicas_in_sync
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local
        passes = [0]

        def parts():
            if passes[0]:
                data.on_epoch_end()
            passes[0] += 1
            data.on_epoch_begin()
            for index in range(len(data)):
                batch = data[index]
                size = len(keras.tree.flatten(batch)[0]) // replicas
                for replica in range(first, first + local):
                    rows = slice(replica * size, (replica + 1) * size)
                    yield keras.tree.map_structure(lambda a, rows=rows: a[rows], batch)

        return tf.data.Dataset.from_generator(parts, output_signature=signature)

    return strategy.distribute_datasets_from_function(dataset_for)
