"""Two-process Horovod smoke test (TensorFlow backend, Gloo).

Run:
    timeout 120 .venv/bin/horovodrun -np 2 -H localhost:2 --gloo \
        .venv/bin/python scripts/horovod_smoke.py
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import horovod.tensorflow as hvd
import keras
import numpy as np
import tensorflow as tf

hvd.init()
rank, size = hvd.rank(), hvd.size()

# Rank-dependent random init: the weights differ across ranks before the broadcast.
keras.utils.set_random_seed(1234 + rank)
model = keras.Sequential(
    [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]
)
before = sum(float(np.sum(v.numpy())) for v in model.variables)
sums_before = hvd.allgather(tf.constant([before], tf.float64)).numpy()
if size > 1:
    assert not np.allclose(sums_before, sums_before[0]), sums_before

hvd.broadcast_variables([v.value for v in model.variables], root_rank=0)

# Every weight must now match rank 0's: gather all ranks' flattened weights.
flat = tf.concat([tf.reshape(tf.cast(v.value, tf.float64), [-1]) for v in model.variables], 0)
gathered = hvd.allgather(flat[None, :]).numpy()  # shape (size, n_weights)
assert gathered.shape[0] == size, gathered.shape
assert np.array_equal(gathered, np.repeat(gathered[:1], size, 0)), "weights differ across ranks"

avg = float(hvd.allreduce(tf.constant(float(rank)), op=hvd.Average))
expected = (size - 1) / 2  # 0.5 for 2 ranks
assert abs(avg - expected) < 1e-6, (avg, expected)

print(
    f"rank {rank}/{size}: OK (checksum before {before:.6f}, after {float(np.sum(flat)):.6f}, "
    f"allreduce average {avg})",
    flush=True,
)
