"""A distributed KerasTuner search on localhost, in KerasTuner's own
chief/worker mode: one chief process serves the oracle, two workers run the
trials of a keras-fastrain tuner; every trial completes exactly once."""

import contextlib
import json
import os
import subprocess
import sys
import time

import keras
import pytest

from keras_fastrain.distribute.local_launch import free_ports

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "tune_worker.py")
TIMEOUT = 300
NAMES = ("chief", "tuner0")

pytestmark = pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="the torch suite runs the smoke tests only"
)


def start(tuner_id, port, directory, log, max_duration=600):
    environ = {
        **os.environ,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(port),
        "KERASTUNER_TUNER_ID": tuner_id,
    }
    return subprocess.Popen(
        [sys.executable, SCRIPT, str(directory), str(max_duration)],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_chief_and_two_workers_run_every_trial_once(tmp_path):
    (port,) = free_ports(1)
    names = ["chief", "tuner0", "tuner1"]
    processes = {}
    with contextlib.ExitStack() as files:
        logs = {name: files.enter_context(open(tmp_path / f"{name}.log", "w")) for name in names}
        processes["chief"] = start("chief", port, tmp_path, logs["chief"])
        time.sleep(1)  # the workers also wait for the chief's server
        for name in names[1:]:
            processes[name] = start(name, port, tmp_path, logs[name])
        deadline = time.monotonic() + TIMEOUT  # one deadline for both workers
        try:
            for name in names[1:]:
                processes[name].wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            for process in processes.values():  # the chief may outlive the search
                process.kill()
                process.wait()
    outputs = {name: (tmp_path / f"{name}.log").read_text() for name in names}
    ran = []
    for name in names[1:]:
        failure = f"{name} failed:\n{outputs[name][-3000:]}\nchief:\n{outputs['chief'][-3000:]}"
        assert processes[name].returncode == 0, failure
        results = [line for line in outputs[name].splitlines() if "RESULT " in line]
        ran += json.loads(results[0].split("RESULT ", 1)[1])["ran"]
    assert sorted(ran) == ["0", "1", "2", "3"]  # every trial once, none twice
    project = tmp_path / "distributed"
    for trial_id in ran:
        with open(project / f"trial_{trial_id}" / "trial.json") as trial_file:
            trial = json.load(trial_file)
        assert trial["status"] == "COMPLETED"
        assert trial["metrics"]["metrics"]["time_to_val_accuracy"]
        assert (project / f"trial_{trial_id}" / "timing_profile.json").exists()


def test_the_chiefs_spent_budget_stops_its_worker_and_itself(tmp_path):
    # The chief's oracle (a BudgetedOracle) answers "STOPPED" once the
    # chief's budget is spent, here at once: the worker runs no trial and
    # ends, and the chief, with no worker left, ends by itself. One worker
    # only: KerasTuner's chief leaves when no worker it has seen is left, so
    # a second one asking later could find no chief.
    (port,) = free_ports(1)
    with contextlib.ExitStack() as files:
        logs = {name: files.enter_context(open(tmp_path / f"{name}.log", "w")) for name in NAMES}
        chief = start("chief", port, tmp_path, logs["chief"], max_duration=1e-6)
        time.sleep(1)
        worker = start("tuner0", port, tmp_path, logs["tuner0"], max_duration=1e-6)
        try:
            worker.wait(timeout=TIMEOUT)
            chief.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        finally:
            for process in (worker, chief):
                if process.poll() is None:
                    process.kill()
                    process.wait()
    outputs = {name: (tmp_path / f"{name}.log").read_text() for name in NAMES}
    failure = f"worker:\n{outputs['tuner0'][-3000:]}\nchief:\n{outputs['chief'][-3000:]}"
    assert (worker.returncode, chief.returncode) == (0, 0), failure
    results = [line for line in outputs["tuner0"].splitlines() if "RESULT " in line]
    assert json.loads(results[0].split("RESULT ", 1)[1])["ran"] == [], failure
    assert not list((tmp_path / "distributed").glob("trial_*")), failure
