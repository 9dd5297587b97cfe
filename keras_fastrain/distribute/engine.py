"""What every distribution engine offers FastModel, and the one-device engine.

An engine owns where variables live and how a step runs on its devices.
FastModel asks it for three things only: a `scope()` to create variables and
run `compile`/`fit`/`evaluate`/`predict` in, `adopt()` to move variables that
were created before the engine was chosen, and `prepare_optimizer()`. The
multi-worker engines (the distributed issue) add rank, size and collectives
to the same class.
"""

import contextlib


class Engine:
    """Trains on one device, the way plain Keras does.

    Attributes:
        name: String. The engine's name, as `distribute=` accepts it.
        num_replicas: Integer. How many model replicas train in step; the
            global batch is split across them.
        reason: String. Why this engine was chosen.
    """

    name = "none"

    def __init__(self, reason="given"):
        self.reason = reason

    @property
    def num_replicas(self):
        return 1

    @property
    def devices(self):
        return ()

    def scope(self):
        """A context in which variables are created and steps run."""
        return contextlib.nullcontext()

    def adopt(self, model, variables):
        """Puts `model` and `variables` made outside `scope()` on the engine.

        Args:
            model: The `keras.Model` that trains on this engine.
            variables: List of its Keras variables (weights, optimizer and
                metric variables), wherever they were created.

        Returns:
            The number of variables moved.
        """
        del model, variables
        return 0

    def check_batches(self, num_samples, batch_size):
        """Raises if `num_samples` in batches of `batch_size` cannot run here."""
        del num_samples, batch_size

    def prepare_optimizer(self, optimizer):
        """Returns an optimizer that can train under this engine."""
        return optimizer

    def describe(self):
        devices = f" over {', '.join(self.devices)}" if self.devices else ""
        return f"{self.name}{devices}"

    def __repr__(self):
        return f"<{type(self).__name__} {self.describe()}>"
