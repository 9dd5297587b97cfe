"""BackupAndRestore that also carries the state of keras-fastrain callbacks.

`keras.callbacks.BackupAndRestore` saves the model and the epoch, so that an
interrupted `fit` resumes where it stopped. A callback's own progress (an
early-stopping wait counter, a spent time budget) is not part of the model and
would start again from nothing. This subclass saves the `get_state()` of the
callbacks it is given beside each backup, and gives it back with `set_state()`
on resume.
"""

import json
import os

import keras

__all__ = ["BackupAndRestore"]

STATE_FILE = "callback_states.json"


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore`, plus the state of other callbacks.

    Args:
        backup_dir: String. Where the backup lives; as in Keras.
        callbacks: List of callbacks with `get_state()` and `set_state()`
            (e.g. `keras_fastrain.callbacks.EarlyStopping`) whose state is
            saved with every backup and restored on resume. Defaults to `()`.
        **kwargs: `save_freq`, `double_checkpoint` and `delete_checkpoint`,
            as in `keras.callbacks.BackupAndRestore`.

    Example:

    ```python
    stop = keras_fastrain.callbacks.EarlyStopping(max_duration=3600, patience=3)
    backup = keras_fastrain.callbacks.BackupAndRestore("/tmp/backup", callbacks=[stop])
    model.fit(x, y, epochs=50, validation_split=0.1, callbacks=[backup, stop])
    ```
    """

    def __init__(self, backup_dir, callbacks=(), **kwargs):
        super().__init__(backup_dir, **kwargs)
        callbacks = list(callbacks)
        for index, callback in enumerate(callbacks):
            if not (hasattr(callback, "get_state") and hasattr(callback, "set_state")):
                raise TypeError(
                    "Invalid value for argument `callbacks`. "
                    f"Received: callbacks[{index}]={callback!r}. Expected "
                    "callbacks with get_state() and set_state()."
                )
        self.callbacks = callbacks
        self._state_path = os.path.join(backup_dir, STATE_FILE)
        self._metadata_path = os.path.join(backup_dir, "training_metadata.json")
        self._seen_backup = None

    def _keys(self):
        return [
            f"{index}:{type(callback).__name__}" for index, callback in enumerate(self.callbacks)
        ]

    def _backup_stamp(self):
        try:
            return os.stat(self._metadata_path).st_mtime_ns
        except FileNotFoundError:
            return None

    def _save_states_if_backed_up(self, again=False):
        """Writes the states when Keras has written a backup since the last time.

        Args:
            again: Bool. Write even if this backup's states were written
                already: callbacks later in the list may have changed their
                state in the same `on_epoch_end` after this one ran.
        """
        stamp = self._backup_stamp()
        if stamp is None or (stamp == self._seen_backup and not again) or not self.callbacks:
            return
        self._seen_backup = stamp
        states = {key: cb.get_state() for key, cb in zip(self._keys(), self.callbacks, strict=True)}
        partial = f"{self._state_path}.partial"
        with open(partial, "w") as state_file:
            json.dump(states, state_file)
        os.replace(partial, self._state_path)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._seen_backup = self._backup_stamp()
        if self._seen_backup is None or not os.path.exists(self._state_path):
            return
        with open(self._state_path) as state_file:
            states = json.load(state_file)
        for key, callback in zip(self._keys(), self.callbacks, strict=True):
            if key in states:
                callback.set_state(states[key])

    def on_epoch_begin(self, epoch, logs=None):
        self._save_states_if_backed_up(again=True)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._save_states_if_backed_up()

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.save_freq != "epoch":
            self._save_states_if_backed_up()
