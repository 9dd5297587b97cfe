"""tfmot's own schedule values and masks for the cases on stdin (JSON).

Runs in a process of its own: importing tfmot switches `tf.keras` to the
legacy Keras for the whole process. Prints one JSON line.
"""

import json
import sys

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import (
    pruning_impl,
    pruning_schedule,
)

cases = json.load(sys.stdin)
results = {"schedules": [], "masks": []}
for case in cases["schedules"]:
    schedule = getattr(pruning_schedule, case["class_name"])(**case["config"])
    values = [schedule(tf.constant(step, tf.int64)) for step in case["steps"]]
    results["schedules"].append([[bool(prune), float(sparsity)] for prune, sparsity in values])
for case in cases["masks"]:
    weights = tf.constant(np.array(case["weights"], dtype=np.float32))
    m_by_n = case.get("m_by_n")
    pruning = pruning_impl.Pruning(
        training_step_fn=lambda: tf.constant(0, tf.int64),
        pruning_vars=[(weights, None, None)],
        pruning_schedule=pruning_schedule.ConstantSparsity(case.get("sparsity", 0.5), 0),
        block_size=case.get("block_size", (1, 1)),
        block_pooling_type=case.get("pooling", "AVG"),
        sparsity_m_by_n=None if m_by_n is None else tuple(m_by_n),
    )
    _, mask = pruning._maybe_update_block_mask(weights)
    results["masks"].append(np.asarray(mask).tolist())
print(json.dumps(results))
