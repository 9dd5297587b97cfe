"""What every benchmark records beside its figures, and where it saves them."""

import datetime
import json
import os
import platform

import keras

import keras_fastrain

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def environment():
    """Returns the backend, versions, machine and date of this run."""
    return {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "keras_fastrain_version": keras_fastrain.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def save_result(name, result, out_dir=RESULTS_DIR):
    """Writes `{"benchmark": name, **environment(), **result}` to `<name>_<backend>.json`."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}_{keras.backend.backend()}.json")
    with open(path, "w") as json_file:
        json.dump({"benchmark": name, **environment(), **result}, json_file, indent=2)
    print(f"Saved {path}.")
    return path
