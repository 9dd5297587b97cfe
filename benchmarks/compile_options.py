"""Which compile options make the baseline recipe train faster on this backend.

Trains the baseline recipe's model (Flatten, Dense 128 relu, Dense 10 softmax,
Adam) on Fashion-MNIST for one epoch per measurement, at batch 32 (the
classic recipe) and 512, with `jit_compile` off and on and
`steps_per_execution` 1, 8 and 32. Each configuration compiles its own model
once and is warmed up; rounds alternate the configurations. Reports the
median epoch time and the speed-up against `jit_compile=False,
steps_per_execution=1` at the same batch size, from the same run. These
figures are what `FastModel`'s `"auto"` choices rest on.

    KERAS_BACKEND=jax python benchmarks/compile_options.py

Prints a table and writes benchmarks/results/compile_options_<backend>.json.
"""

import argparse
import itertools
import statistics
import time

import keras
from common import RESULTS_DIR, save_result

import keras_fastrain
from keras_fastrain.demo import baseline_layers


def configurations(backend):
    jit_values = (False, True)
    spe_values = (1,) if backend == "torch" else (1, 8, 32)  # torch: spe must be 1
    return [
        {"batch_size": batch, "jit_compile": jit, "steps_per_execution": spe}
        for batch, jit, spe in itertools.product((32, 512), jit_values, spe_values)
    ]


def compiled_model(config):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(baseline_layers())
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config["jit_compile"],
        steps_per_execution=config["steps_per_execution"],
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=20000, help="training images")
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args()

    (x, y), _ = keras_fastrain.load_fashion_mnist()
    x = (x[: args.subset] / 255.0).astype("float32")
    y = y[: args.subset]
    configs = configurations(keras.backend.backend())
    models = []
    for config in configs:
        model = compiled_model(config)
        model.fit(x[:2048], y[:2048], batch_size=config["batch_size"], epochs=1, verbose=0)
        models.append(model)

    times = [[] for _ in configs]
    for round_index in range(args.rounds):
        for index, (config, model) in enumerate(zip(configs, models, strict=True)):
            start = time.perf_counter()
            model.fit(x, y, batch_size=config["batch_size"], epochs=1, verbose=0)
            times[index].append(time.perf_counter() - start)
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)

    rows = []
    for config, values in zip(configs, times, strict=True):
        base = next(
            statistics.median(v)
            for c, v in zip(configs, times, strict=True)
            if c == {**config, "jit_compile": False, "steps_per_execution": 1}
        )
        rows.append(
            {
                **config,
                "median_epoch_seconds": statistics.median(values),
                "speedup": base / statistics.median(values),
                "seconds": values,
            }
        )
    print(f"\n{'batch':>5}  {'jit':>5}  {'spe':>3}  {'epoch s':>8}  {'speed-up':>8}")
    for row in rows:
        print(
            f"{row['batch_size']:>5}  {row['jit_compile']!s:>5}  "
            f"{row['steps_per_execution']:>3}  {row['median_epoch_seconds']:>8.3f}  "
            f"{row['speedup']:>7.2f}x"
        )
    save_result(
        "compile_options",
        {"train_samples": len(x), "rounds": args.rounds, "results": rows},
        args.out_dir,
    )


if __name__ == "__main__":
    main()
