"""`CallbackPart`: a part whose option adds one callback to every `fit`.

Selective backprop, progressive resizing and layer freezing are each a
callback for a plain `model.fit`; their FastModel option builds the
callback, records the decision at `compile`, and adds it to every `fit`
unless the user gave one of its class. The three swap the compiled
training step, so a model takes at most one of them (`STEP_OPTIONS`).
"""

from keras_fastrain import choices
from keras_fastrain.parts.base import Part

__all__ = ["STEP_OPTIONS", "CallbackPart"]

# The options whose callbacks each swap the compiled training step.
STEP_OPTIONS = ("selective_backprop", "progressive_resizing", "layer_freezing")


class CallbackPart(Part):
    """A part that adds its callback to every `fit` when its option is set.

    Subclasses set `name` (also the option's name), `options`,
    `callback_class`, and implement `make_callback` and `describe`.

    Example:

    ```python
    class CSVLogPart(CallbackPart):
        name = "csv_log"
        options = {"csv_log": None}
        callback_class = keras.callbacks.CSVLogger

        def make_callback(self, option):
            return None if option is None else keras.callbacks.CSVLogger(option)

        def describe(self, callback):
            return callback.filename, f"each epoch's logs go to {callback.filename}"
    ```
    """

    callback_class = None

    def make_callback(self, option):
        """The callback for the option's value, or `None` when it is off."""
        raise NotImplementedError

    def describe(self, callback):
        """`(value, reason)`: what `model.choices[name]` records."""
        raise NotImplementedError

    def check_compile(self, plan, callback):
        """Raises if the compiled model cannot take the callback."""
        del plan, callback

    def on_compile(self, plan):
        callback = self.make_callback(plan.options[self.name])
        if callback is None:
            return
        if self.name in STEP_OPTIONS:
            _refuse_step_sharing(plan, self.name)
        self.check_compile(plan, callback)
        value, reason = self.describe(callback)
        plan.decide(choices.Choice(self.name, value, reason, changes_results=True))

    def on_run(self, plan):
        if plan.method != "fit":
            return
        callback = self.make_callback(plan.options[self.name])
        if callback is not None and not any(
            isinstance(c, self.callback_class) for c in plan.callbacks
        ):
            plan.callbacks.append(callback)


def _refuse_step_sharing(plan, name):
    for other in STEP_OPTIONS:
        if other != name and plan.options.get(other) not in (None, False):
            raise ValueError(
                f"Invalid value for argument `{name}`: {plan.options[name]!r}. {name} and "
                f"{other} each swap the compiled training step during fit, and cannot "
                f"share it. Expected one of them (set {other}=None)."
            )
