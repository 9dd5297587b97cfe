"""1 against 2 workers on this host, for each engine of the backend.

The baseline model on Fashion-MNIST (60,000 images, global batch 512 by
default), `FastSequential` with `distribute="auto"`, in three set-ups run
alternately for `--rounds` rounds:

- one process: the baseline;
- two independent processes at once, each on half the rows at half the
  batch, with no engine: the same computation as two workers and the same
  contention for this machine's cores, without any communication (the
  control);
- two workers of the engine (MultiWorkerMirroredStrategy through TF_CONFIG
  and Horovod through `horovodrun --gloo` on TensorFlow; JAX multi-process
  on JAX), each on its share of every global batch.

Reported: samples per second and seconds per epoch (epochs after the first,
which compiles), scaling efficiency (2-worker throughput over twice the
1-process throughput) and the share of a worker's epoch spent communicating
and waiting (1 - control epoch / worker epoch), and the cost of the check
that the workers' weights agree (one per epoch) as a share of an epoch. Two
cores bound what two workers can gain here; see the README for what it
implies for a cluster.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

import keras
from common import RESULTS_DIR, save_result

from keras_fastrain.distribute.local_launch import launch_local

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "scaling_worker.py")
ROWS = 60_000


def engines():
    if keras.backend.backend() == "jax":
        return ["jax_multi_process"]
    found = ["multi_worker"]
    if importlib.util.find_spec("horovod") is not None:
        found.append("horovod")
    return found


def results(outputs):
    found = []
    for output in outputs:
        lines = [line.split("RESULT ", 1)[1] for line in output.splitlines() if "RESULT " in line]
        if not lines:
            raise RuntimeError(f"a worker reported nothing:\n{output[-3000:]}")
        found.append(json.loads(lines[0]))
    return found


def plain_processes(count, batch, epochs, rows):
    """`count` processes with no engine at once; their results."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CONFIG", "KERAS_DIST"))}
    processes = [
        subprocess.Popen(
            [sys.executable, WORKER, str(batch), str(epochs), str(rows)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]
    return results([process.communicate(timeout=1800)[0] for process in processes])


def steady_epoch(result):
    """Median seconds of the epochs after the first (which compiles)."""
    return statistics.median(result["epoch_seconds"][1:])


def run_round(engine, args):
    one = plain_processes(1, args.batch, args.epochs, ROWS)[0]
    control = plain_processes(2, args.batch // 2, args.epochs, ROWS // 2)
    outcomes = launch_local(
        engine, [WORKER, str(args.batch), str(args.epochs)], size=2, timeout=1800
    )
    workers = results([outcome.output for outcome in outcomes])
    return {
        "one_process_epoch": steady_epoch(one),
        "control_epoch": max(steady_epoch(r) for r in control),
        "workers_epoch": max(steady_epoch(r) for r in workers),
        "workers_final_loss": [r["loss"][-1] for r in workers],
        "agreement_check_seconds": max(r["agreement_check_seconds"] for r in workers),
        "one_process_final_loss": one["loss"][-1],
    }


def summarize(rounds):
    one = statistics.median(r["one_process_epoch"] for r in rounds)
    control = statistics.median(r["control_epoch"] for r in rounds)
    workers = statistics.median(r["workers_epoch"] for r in rounds)
    check = statistics.median(r["agreement_check_seconds"] for r in rounds)
    return {
        "one_process": {"epoch_seconds": one, "samples_per_second": ROWS / one},
        "two_workers": {"epoch_seconds": workers, "samples_per_second": ROWS / workers},
        "control_two_plain_processes": {"epoch_seconds": control},
        "speedup": one / workers,
        "scaling_efficiency": one / workers / 2,
        "communication_share": max(0.0, 1 - control / workers),
        "agreement_check": {"seconds": check, "share_of_epoch": check / workers},
        "rounds": rounds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args()
    figures = {}
    for engine in engines():
        rounds = []
        for index in range(args.rounds):
            rounds.append(run_round(engine, args))
            print(
                f"keras-fastrain scaling: {engine} round {index + 1}/{args.rounds} done", flush=True
            )
        figures[engine] = summarize(rounds)
    print(
        f"\n{'engine':<20}{'1 proc s/ep':>12}{'2 workers s/ep':>16}{'samples/s 1->2':>20}"
        f"{'efficiency':>12}{'comm share':>12}{'check/epoch':>13}"
    )
    for engine, f in figures.items():
        one, two = f["one_process"], f["two_workers"]
        rate = f"{one['samples_per_second']:.0f} -> {two['samples_per_second']:.0f}"
        print(
            f"{engine:<20}{f['one_process']['epoch_seconds']:>12.2f}"
            f"{f['two_workers']['epoch_seconds']:>16.2f}{rate:>20}"
            f"{f['scaling_efficiency']:>12.0%}{f['communication_share']:>12.0%}"
            f"{f['agreement_check']['share_of_epoch']:>13.2%}"
        )
    settings = {"batch": args.batch, "epochs": args.epochs, "rounds": args.rounds, "rows": ROWS}
    save_result("scaling", {"settings": settings, "engines": figures}, args.out_dir)


if __name__ == "__main__":
    main()
