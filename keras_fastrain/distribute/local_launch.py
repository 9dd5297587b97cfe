"""Start a multi-worker job on this host: every worker a local process.

For trying a distributed script before a cluster, for tests and for
scaling benchmarks. Each engine is started through its own launch
convention, so the script runs exactly as it would on a cluster:
TF_CONFIG for `multi_worker`, Keras's KERAS_DISTRIBUTION_* variables for
`jax_multi_process`, `horovodrun --gloo` for `horovod`.
"""

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time

from keras_fastrain.distribute.resolve import BACKEND_OF, MULTI_WORKER_ENGINES
from keras_fastrain.validation import check_choice, check_int

__all__ = ["free_ports", "launch_local", "worker_environments", "WorkerOutcome"]

# Every multi-worker engine can be launched here; these two by the variables
# of each worker's environment (`worker_environments`), Horovod by horovodrun.
LAUNCHABLE_ENGINES = MULTI_WORKER_ENGINES
ENVIRONMENT_LAUNCHED_ENGINES = ("multi_worker", "jax_multi_process")


@dataclasses.dataclass
class WorkerOutcome:
    """How one worker ended: `returncode` (`None` if killed at the timeout)
    and its output (stdout and stderr together)."""

    rank: int
    returncode: int | None
    output: str

    def lines_with(self, prefix):
        """The text after `prefix` on each of this worker's lines that has it."""
        return [line.split(prefix, 1)[1] for line in self.output.splitlines() if prefix in line]


def free_ports(count):
    """`count` TCP ports free on localhost now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_environments(engine, size, environ=None):
    """The environment of each of `size` local workers of `engine`
    (`multi_worker` or `jax_multi_process`), in rank order."""
    check_choice("engine", engine, ENVIRONMENT_LAUNCHED_ENGINES)
    check_int("size", size, minimum=1)
    base = {**(os.environ if environ is None else environ), "KERAS_BACKEND": BACKEND_OF[engine]}
    if engine == "multi_worker":
        workers = [f"localhost:{port}" for port in free_ports(size)]
        return [
            {
                **base,
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}}
                ),
            }
            for rank in range(size)
        ]
    (port,) = free_ports(1)
    return [
        {
            **base,
            "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{port}",
            "KERAS_DISTRIBUTION_NUM_PROCESSES": str(size),
            "KERAS_DISTRIBUTION_PROCESS_ID": str(rank),
        }
        for rank in range(size)
    ]


def launch_local(engine, args, size=2, timeout=600):
    """Runs `python ARGS...` as `size` workers of `engine` on this host.

    Args:
        engine: One of `LAUNCHABLE_ENGINES`: `"multi_worker"`, `"horovod"` or
            `"jax_multi_process"`.
        args: List of strings: the script and its arguments.
        size: Integer. How many workers.
        timeout: Number. Seconds after which every worker still running is
            killed.

    Returns:
        A `WorkerOutcome` per worker, in rank order. Under `horovodrun` the
        job has one return code, which every outcome carries, and each
        worker's output is its lines of the job's.
    """
    check_choice("engine", engine, LAUNCHABLE_ENGINES)
    if engine == "horovod":
        return _launch_horovod(args, size, timeout)
    processes = [
        subprocess.Popen(
            [sys.executable, *args],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for env in worker_environments(engine, size)
    ]
    deadline = time.monotonic() + timeout
    outcomes = []
    for rank, process in enumerate(processes):
        try:
            output, _ = process.communicate(timeout=max(deadline - time.monotonic(), 1))
            code = process.returncode
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            output, _ = process.communicate()
            code = None
        outcomes.append(WorkerOutcome(rank, code, output))
    return outcomes


def _launch_horovod(args, size, timeout):
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    command = [horovodrun, "-np", str(size), "-H", f"localhost:{size}", "--gloo"]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONUNBUFFERED": "1"}
    try:
        run = subprocess.run(
            [*command, sys.executable, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        code, output = run.returncode, run.stdout + run.stderr
    except subprocess.TimeoutExpired as expired:
        code, output = None, _text(expired.stdout) + _text(expired.stderr)
    # horovodrun prefixes each worker's lines with "[rank]<stdout>:".
    # Lines without a prefix are the launcher's own; every worker gets them.
    per_rank = {rank: [] for rank in range(size)}
    launcher = []
    for line in output.splitlines():
        found = re.match(r"\[(\d+)\]<std(?:out|err)>:(.*)", line)
        if found and int(found.group(1)) in per_rank:
            per_rank[int(found.group(1))].append(found.group(2))
        else:
            launcher.append(line)
    return [WorkerOutcome(rank, code, "\n".join(per_rank[rank] + launcher)) for rank in range(size)]


def _text(data):
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
