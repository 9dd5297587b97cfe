"""One process of a distributed KerasTuner search; started by
tests/test_tuner_distributed.py with KerasTuner's own variables
(KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT, KERASTUNER_TUNER_ID).

Usage: tune_worker.py DIRECTORY [MAX_DURATION]. The chief serves the
oracle; each worker runs trials and prints, prefixed with RESULT, the ids of
the trials it ran. MAX_DURATION (seconds, default 600) is the search's time
budget; the chief's decides when trials stop being handed out.
"""

import json
import os
import sys

import keras

from keras_fastrain import load_digits
from keras_fastrain.tuner import FastHyperModel, RandomSearch, TimeToAccuracy

ran = []


class RecordingSearch(RandomSearch):
    def run_trial(self, trial, *args, **kwargs):
        ran.append(trial.trial_id)
        return super().run_trial(trial, *args, **kwargs)


def build_model(hp):
    model = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Choice("units", [16, 32, 64, 128]), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


(x, y), (x_test, y_test) = load_digits()
tuner = RecordingSearch(
    FastHyperModel(build_model, batch_sizes=(32, 64)),
    objective=TimeToAccuracy("val_accuracy", target=0.8),
    max_trials=4,
    max_duration=float(sys.argv[2]) if len(sys.argv) > 2 else 600,
    directory=sys.argv[1],
    project_name="distributed",
)
tuner.search(x[:512], y[:512], validation_data=(x_test, y_test), epochs=3, verbose=0)
tuner_id = os.environ["KERASTUNER_TUNER_ID"]
print("RESULT " + json.dumps({"tuner_id": tuner_id, "ran": ran}), flush=True)
