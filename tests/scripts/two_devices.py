"""Trains one FastModel on 1 device and on 2 local devices; prints JSON.

Run as `python two_devices.py DEVICES [prune]`: with DEVICES=2 the process first
splits its CPU into two devices (TensorFlow logical devices, or JAX host
devices through XLA_FLAGS, which must be set before JAX starts), then the
same training code runs unchanged with `distribute="auto"`. With `prune`,
the model is pruned during training (FastModel's `pruning=`).
"""

import json
import os
import sys

devices = int(sys.argv[1])
prune = sys.argv[2:] == ["prune"]
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
if backend == "jax":
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
elif devices > 1:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fastrain  # noqa: E402

(x, y), (x_test, y_test) = keras_fastrain.load_digits()
keras.utils.set_random_seed(0)
inputs = keras.Input((8, 8))
hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
outputs = keras.layers.Dense(10, activation="softmax")(hidden)
schedule = keras_fastrain.pruning.ConstantSparsity(0.6, begin_step=0, frequency=8)
model = keras_fastrain.FastModel(inputs, outputs, pruning=schedule if prune else None)
model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
try:  # 359 rows: a last batch of 7, which JAX cannot split over 2 devices
    model.evaluate(x_test, y_test, verbose=0)
    uneven_error = None
except ValueError as error:
    uneven_error = str(error)
history = model.fit(x[:1024], y[:1024], batch_size=64, epochs=3, shuffle=False, verbose=0)
print(
    json.dumps(
        {
            "engine": model.engine.describe(),
            "replicas": model.engine.num_replicas,
            "choices": {name: choice.value for name, choice in model.choices.items()},
            "uneven_error": uneven_error,
            "loss": history.history["loss"],
            # 352 rows: JAX splits every batch evenly over the devices.
            "test": model.evaluate(x_test[:352], y_test[:352], verbose=0),
            "predictions": model.predict(x_test[:5], verbose=0).tolist(),
            "weights": [np.asarray(w).tolist() for w in model.get_weights()],
        }
    )
)
