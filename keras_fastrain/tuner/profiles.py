"""Each trial's `TimingProfiler` summary, saved with the trial, and a table
of them, so that a user can see why one trial trained faster than another."""

import json
import os

from keras_fastrain.validation import check_bool, check_int

__all__ = ["PROFILE_FILE", "format_speed_report", "speed_report", "trial_profile"]

PROFILE_FILE = "timing_profile.json"


def profile_path(tuner, trial_id):
    """Where the profile of trial `trial_id` is saved (its trial folder)."""
    return os.path.join(tuner.get_trial_dir(trial_id), PROFILE_FILE)


def trial_profile(tuner, trial_id):
    """The `TimingProfiler.summary()` saved for trial `trial_id`, or `None`
    if that trial saved none (it failed before training ended).

    Args:
        tuner: A `keras_fastrain.tuner` tuner that has searched.
        trial_id: String. The trial's id (`trial.trial_id`).

    Example:

    ```python
    best = tuner.oracle.get_best_trials(1)[0]
    profile = trial_profile(tuner, best.trial_id)
    print(profile["steady_state"]["samples_per_sec"], profile["jit_compile"])
    ```
    """
    path = profile_path(tuner, trial_id)
    if not os.path.exists(path):
        return None
    with open(path) as profile_file:
        return json.load(profile_file)


def speed_report(tuner, num_trials=None, print_table=True):
    """One row per trial, best first: its score, hyperparameters and
    training speed (from its saved profile).

    Args:
        tuner: A tuner that has searched (`keras_fastrain.tuner.RandomSearch`
            and the others save the profiles).
        num_trials: Integer or `None` (all). How many of the best trials.
        print_table: Bool. Also print the rows as a table. Defaults to `True`.

    Returns:
        A list of dicts: `trial_id`, `score`, `hyperparameters`, `epochs`,
        `train_seconds`, `seconds_per_epoch` and `samples_per_sec` (steady
        state, when the batch size was known).

    Example:

    ```python
    tuner.search(x, y, validation_split=0.2, epochs=5)
    rows = speed_report(tuner, num_trials=3)  # prints the table too
    ```
    """
    if num_trials is not None:
        num_trials = check_int("num_trials", num_trials, minimum=1)
    # A worker's oracle (an OracleClient) cannot count the trials: ask for all.
    trials = tuner.oracle.get_best_trials(num_trials or 2**31 - 1)
    rows = []
    for trial in trials:
        profile = trial_profile(tuner, trial.trial_id) or {}
        epochs = profile.get("epochs") or []
        train_seconds = sum(row.get("epoch_time") or 0.0 for row in epochs)
        rows.append(
            {
                "trial_id": trial.trial_id,
                "score": trial.score,
                "hyperparameters": dict(trial.hyperparameters.values),
                "epochs": len(epochs),
                "train_seconds": train_seconds if epochs else None,
                "seconds_per_epoch": train_seconds / len(epochs) if epochs else None,
                "samples_per_sec": (profile.get("steady_state") or {}).get("samples_per_sec"),
            }
        )
    if check_bool("print_table", print_table):
        print(format_speed_report(rows))
    return rows


def format_speed_report(rows):
    """`speed_report`'s rows as a text table."""

    def number(value, spec):
        return "-" if value is None else format(value, spec)

    lines = [
        f"{'trial':>6} {'score':>10} {'epochs':>6} {'s/epoch':>8} {'samples/s':>10}  "
        "hyperparameters"
    ]
    for row in rows:
        values = ", ".join(f"{k}={v}" for k, v in row["hyperparameters"].items())
        lines.append(
            f"{row['trial_id']:>6} {number(row['score'], '.4g'):>10} {row['epochs']:>6} "
            f"{number(row['seconds_per_epoch'], '.2f'):>8} "
            f"{number(row['samples_per_sec'], ',.0f'):>10}  {values}"
        )
    return "\n".join(lines)
