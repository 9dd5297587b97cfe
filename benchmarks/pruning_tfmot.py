"""The tfmot side of benchmarks/pruning.py: tf_keras + tensorflow-model-optimization.

Run by pruning.py in a process of its own (tfmot switches tf.keras to the
legacy Keras for the whole process); prints one JSON line. Settings come as
a JSON argument, so both sides train the same way.
"""

import json
import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow_model_optimization as tfmot
import tf_keras

from keras_fastrain.datasets import load_fashion_mnist
from keras_fastrain.pruning.report import gzipped_weights_size  # the same measure

settings = json.loads(sys.argv[1])
(x, y), (x_test, y_test) = load_fashion_mnist()
x, x_test = (x / 255.0).astype("float32"), (x_test / 255.0).astype("float32")
sparsity = tfmot.sparsity.keras


def model():
    tf_keras.utils.set_random_seed(settings["seed"])
    return tf_keras.Sequential(
        [
            tf_keras.layers.Flatten(input_shape=(28, 28)),
            tf_keras.layers.Dense(128, activation="relu"),
            tf_keras.layers.Dense(10, activation="softmax"),
        ]
    )


def run(pruned):
    net = model()
    callbacks = []
    if pruned:
        schedule = sparsity.PolynomialDecay(**settings["schedule"])
        net = sparsity.prune_low_magnitude(net, pruning_schedule=schedule)
        callbacks = [sparsity.UpdatePruningStep()]
    net.compile(
        tf_keras.optimizers.Adam(settings["learning_rate"]),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    net.fit(
        x,
        y,
        batch_size=settings["batch_size"],
        epochs=settings["epochs"],
        verbose=0,
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - start
    if pruned:
        net = sparsity.strip_pruning(net)
    accuracy = float((net.predict(x_test, verbose=0).argmax(-1) == y_test).mean())
    zeros = [float((w == 0).mean()) for w in net.get_weights() if w.ndim == 2]
    return {
        "seconds": seconds,
        "accuracy": accuracy,
        "bytes": gzipped_weights_size(net),
        "sparsity": zeros,
    }


rounds = [{"dense": run(False), "pruned": run(True)} for _ in range(settings["rounds"])]
print(
    json.dumps(
        {
            "rounds": rounds,
            "tf_keras_version": tf_keras.__version__,
            "tfmot_version": tfmot.__version__,
        }
    )
)
