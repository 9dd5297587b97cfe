"""Pruning the baseline model to 80% sparsity: keras-fastrain against tfmot.

The classic recipe's model (Flatten, Dense 128 relu, Dense 10 softmax) on
Fashion-MNIST, trained dense and pruned (PolynomialDecay from 0 to 80%
sparsity over the first 60% of the steps, then fine-tuned at 80%), in the
same run, alternating dense and pruned for `--rounds` rounds:

- keras-fastrain: `FastSequential` dense, and `FastSequential(pruning=...)`
  (masks driven from the host by `UpdatePruningStep`, which FastModel adds),
  on the Keras 3 backend in use; and the classic recipe's snippet on a plain
  `keras.Sequential` (Keras's own compile settings), `prune_low_magnitude`
  then `fit`, once with no callback, where the wrappers update their masks
  inside the training step (`in_step`), and once with `UpdatePruningStep`
  driving them from the host (`host_callback`): the in-step update's cost
  against the callback's, with everything else equal;
- tfmot: the same model in tf_keras with tensorflow-model-optimization (the
  legacy stack, the only one tfmot accepts), run in a process of its own by
  `pruning_tfmot.py`.

For each: test accuracy of dense and pruned, gzipped weights (pruned over
dense), training time of pruned over dense (the cost of pruning), and, for
keras-fastrain, the int8 copy from Keras's `quantize("int8")`. Each side's
overhead is measured against its own dense run: the two stacks' absolute
times are not the point.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import keras
from common import RESULTS_DIR, save_result, scaled_fashion_mnist

from keras_fastrain import FastSequential
from keras_fastrain.demo import baseline_layers
from keras_fastrain.pruning import (
    PolynomialDecay,
    UpdatePruningStep,
    compression_report,
    prune_low_magnitude,
)


def settings(args, steps_per_epoch):
    total = steps_per_epoch * args.epochs
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seed": 0,
        "rounds": args.rounds,
        "schedule": {
            "initial_sparsity": 0.0,
            "final_sparsity": args.sparsity,
            "begin_step": 0,
            "end_step": int(total * 0.6),
            "frequency": 50,
        },
    }


def train(config, data, pruned, plain=None):
    """Trains one model; `plain` is None (FastSequential), "in_step" or
    "host_callback" (a plain Sequential through prune_low_magnitude)."""
    (x, y), _ = data
    keras.utils.set_random_seed(config["seed"])
    schedule = PolynomialDecay(**config["schedule"]) if pruned else None
    callbacks = [UpdatePruningStep()] if plain == "host_callback" else []
    if plain is not None:
        model = prune_low_magnitude(keras.Sequential(baseline_layers()), schedule)
    else:
        model = FastSequential(baseline_layers(), pruning=schedule)
    model.compile(
        keras.optimizers.Adam(config["learning_rate"]),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        x,
        y,
        batch_size=config["batch_size"],
        epochs=config["epochs"],
        verbose=0,
        callbacks=callbacks,
    )
    return model, time.perf_counter() - start


def tfmot_side(config):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, os.path.join(root, "benchmarks", "pruning_tfmot.py"), json.dumps(config)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the tfmot side failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarize(rounds):
    dense = [r["dense"] for r in rounds]
    pruned = [r["pruned"] for r in rounds]
    dense_seconds = statistics.median(r["seconds"] for r in dense)
    pruned_seconds = statistics.median(r["seconds"] for r in pruned)
    return {
        "dense_accuracy": dense[-1]["accuracy"],
        "pruned_accuracy": pruned[-1]["accuracy"],
        "accuracy_points_lost": 100 * (dense[-1]["accuracy"] - pruned[-1]["accuracy"]),
        "size_ratio": pruned[-1]["bytes"] / dense[-1]["bytes"],
        "dense_seconds": dense_seconds,
        "pruned_seconds": pruned_seconds,
        "time_overhead": pruned_seconds / dense_seconds - 1,
        "sparsity": pruned[-1]["sparsity"],
    }


def summarize_in_step(rounds):
    """The in-step update against the host callback, on the same plain model."""
    in_step = statistics.median(r["in_step"]["seconds"] for r in rounds)
    callback = statistics.median(r["host_callback"]["seconds"] for r in rounds)
    return {
        "in_step_seconds": in_step,
        "host_callback_seconds": callback,
        "in_step_accuracy": rounds[-1]["in_step"]["accuracy"],
        "host_callback_accuracy": rounds[-1]["host_callback"]["accuracy"],
        "in_step_sparsity": rounds[-1]["in_step"]["sparsity"],
        "host_callback_sparsity": rounds[-1]["host_callback"]["sparsity"],
        "in_step_over_callback": in_step / callback,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-tfmot", action="store_true")
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args()

    data = scaled_fashion_mnist()
    config = settings(args, -(-len(data[0][0]) // args.batch_size))

    def accuracy(model):
        predictions = model.predict(data[1][0], verbose=0).argmax(-1)
        return {"accuracy": float((predictions == data[1][1]).mean())}

    rounds = []
    for index in range(args.rounds):
        dense, dense_seconds = train(config, data, pruned=False)
        pruned, pruned_seconds = train(config, data, pruned=True)
        plain = {}
        for mode in ("in_step", "host_callback"):
            model, seconds = train(config, data, pruned=True, plain=mode)
            measured = compression_report(model, quantize=False, evaluate=accuracy)
            plain[mode] = {
                "seconds": seconds,
                "accuracy": measured.metrics["pruned accuracy"],
                "sparsity": list(measured.sparsity.values()),
            }
        report = compression_report(pruned, dense=dense, evaluate=accuracy)
        rounds.append(
            {
                "dense": {
                    "seconds": dense_seconds,
                    "accuracy": report.metrics["dense accuracy"],
                    "bytes": report.dense_bytes,
                },
                "pruned": {
                    "seconds": pruned_seconds,
                    "accuracy": report.metrics["pruned accuracy"],
                    "bytes": report.pruned_bytes,
                    "sparsity": list(report.sparsity.values()),
                },
                "int8": {
                    "accuracy": report.metrics["pruned + int8 accuracy"],
                    "bytes": report.int8_bytes,
                },
                **plain,
            }
        )
        print(f"keras-fastrain round {index + 1}/{args.rounds} done", flush=True)
    ours = summarize(rounds)
    ours["int8_accuracy"] = rounds[-1]["int8"]["accuracy"]
    ours["int8_size_ratio"] = rounds[-1]["int8"]["bytes"] / rounds[-1]["dense"]["bytes"]
    ours["in_step"] = summarize_in_step(rounds)
    result = {"settings": config, "keras_fastrain": {**ours, "rounds": rounds}}
    if not args.skip_tfmot:
        theirs = tfmot_side(config)
        result["tfmot"] = {**summarize(theirs["rounds"]), **theirs}

    print(f"\n{'':16s} {'dense acc':>9s} {'pruned acc':>10s} {'size':>6s} {'time':>7s}")
    for name in ("keras_fastrain", "tfmot"):
        if name in result:
            row = result[name]
            print(
                f"{name:16s} {row['dense_accuracy']:9.4f} {row['pruned_accuracy']:10.4f} "
                f"{row['size_ratio']:5.2f}x {row['time_overhead']:+7.1%}"
            )
    in_step = ours["in_step"]
    print(
        f"\nplain Sequential, pruned in the step (no callback): "
        f"{in_step['in_step_seconds']:.1f} s, accuracy {in_step['in_step_accuracy']:.4f}; "
        f"with UpdatePruningStep: {in_step['host_callback_seconds']:.1f} s, accuracy "
        f"{in_step['host_callback_accuracy']:.4f}; in-step/callback time "
        f"{in_step['in_step_over_callback']:.2f}x"
    )
    print(
        f"keras-fastrain pruned + int8: accuracy {ours['int8_accuracy']:.4f}, "
        f"size {ours['int8_size_ratio']:.2f}x dense"
    )
    save_result("pruning", result, args.out_dir)


if __name__ == "__main__":
    main()
