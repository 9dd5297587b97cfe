"""One worker of benchmarks/scaling.py: the baseline model on Fashion-MNIST.

Usage: scaling_worker.py BATCH EPOCHS [ROWS]. Joins whatever job the
environment launches (none: one process), trains a `FastSequential` with
`batch_size=BATCH` (the global batch) on the first ROWS training images,
and prints one `RESULT {...}` line with the time of every epoch, and the
time one check that the workers' weights agree takes (FastModel runs it at
every epoch's end on engines whose workers hold their own weights).
"""

import json
import sys
import time

from keras_fastrain import distribute

engine = distribute.init()  # before TensorFlow or JAX run anything else

import keras  # noqa: E402

from keras_fastrain import FastSequential, load_fashion_mnist  # noqa: E402
from keras_fastrain.callbacks.agreement import check_agreement  # noqa: E402
from keras_fastrain.demo import baseline_layers  # noqa: E402


class EpochTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def main():
    batch, epochs = int(sys.argv[1]), int(sys.argv[2])
    (x, y), _ = load_fashion_mnist()
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else len(x)
    x, y = x[:rows] / 255.0, y[:rows]
    keras.utils.set_random_seed(0)
    model = FastSequential(baseline_layers())
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    timer = EpochTimes()
    history = model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[timer])
    checks = []
    for _ in range(5):
        start = time.perf_counter()
        check_agreement(model, "after training")
        checks.append(time.perf_counter() - start)
    result = {
        "rank": engine.rank,
        "workers": engine.size,
        "engine": engine.name,
        "rows": rows,
        "batch": batch,
        "epoch_seconds": timer.times,
        "loss": history.history["loss"],
        "agreement_check_seconds": sorted(checks)[len(checks) // 2],
    }
    print("RESULT " + json.dumps(result), flush=True)


main()
