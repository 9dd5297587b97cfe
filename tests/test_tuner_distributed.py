"""A distributed KerasTuner search on localhost, in KerasTuner's own
chief/worker mode: one chief process serves the oracle, two workers run the
trials of a keras-fastrain tuner; every trial completes exactly once."""

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

pytestmark = pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="the torch suite runs the smoke tests only"
)


def start(tuner_id, port, directory):
    environ = {
        **os.environ,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(port),
        "KERASTUNER_TUNER_ID": tuner_id,
    }
    return subprocess.Popen(
        [sys.executable, SCRIPT, str(directory)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_chief_and_two_workers_run_every_trial_once(tmp_path):
    (port,) = free_ports(1)
    chief = start("chief", port, tmp_path)
    time.sleep(2)  # the workers find the chief's server listening
    workers = [start(f"tuner{i}", port, tmp_path) for i in range(2)]
    try:
        outputs = [w.communicate(timeout=TIMEOUT)[0] for w in workers]
    finally:
        for process in [*workers, chief]:  # the chief may outlive the search
            process.kill()
            process.wait()
    ran = []
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
        results = [line.split("RESULT ", 1)[1] for line in output.splitlines() if "RESULT " in line]
        ran += json.loads(results[0])["ran"]
    assert sorted(ran) == ["0", "1", "2", "3"]  # every trial once, none twice
    project = tmp_path / "distributed"
    for trial_id in ran:
        with open(project / f"trial_{trial_id}" / "trial.json") as trial_file:
            trial = json.load(trial_file)
        assert trial["status"] == "COMPLETED"
        assert trial["metrics"]["metrics"]["time_to_val_accuracy"]
        assert (project / f"trial_{trial_id}" / "timing_profile.json").exists()
