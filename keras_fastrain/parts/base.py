"""The interface every speed-up implements, and the plans parts fill in.

A part is one speed-up. FastModel holds a list of parts and, at each event,
asks every part in one fixed order (see `keras_fastrain.parts`):

1. `on_compile(plan)`: model or optimizer changes and the `"auto"` choices,
   before `keras.Model.compile` (a `CompilePlan`).
2. `on_run(plan)`: before `keras.Model.fit`, `evaluate` or `predict` (a
   `RunPlan`, whose `method` says which): data transforms, callbacks,
   contexts to hold while Keras runs, and changes to the result.

A part that decides an option asks `plan.constraints_on(option)`, which
collects every part's `constraints(plan)` at that moment: what each requires
of another part's choice, e.g. "no XLA with me" (a `Constraint`). The
deciding part honours them when the user left the option at `"auto"`, and
says why.

A part records what it decided with `plan.decide(choice)`; the decisions are
shown to the user (when `verbose`) and kept in `model.choices`, where a later
part (or a callback, through `set_batch_size`) reads them.
"""

import contextlib
import dataclasses
import typing

from keras_fastrain.snapshot import ModelSnapshot

__all__ = ["CompilePlan", "Constraint", "Part", "RunPlan"]


@dataclasses.dataclass(frozen=True)
class Constraint:
    """What one part requires of an option another part decides.

    Attributes:
        option: String. The option constrained, e.g. `"jit_compile"`.
        value: The value it must take when the user left it at `"auto"`.
        reason: String. Why, in one sentence, shown with the choice.
        part: String. The name of the part that asks.
    """

    option: str
    value: object
    reason: str
    part: str = ""


class Part:
    """One speed-up FastModel applies; subclass it to add your own.

    Override only the hooks the part needs; every hook does nothing by
    default. A part holds configuration only: state of one run lives in the
    plan, on the model, or in the callbacks it adds. Give `parts=[...]` to
    `FastModel` to run your parts after the built-in ones.

    Attributes:
        name: String. The part's name, used in messages and constraints.
        options: Dict of the FastModel options the part owns, with their
            defaults (built-in parts only: a user's part takes its own
            configuration in its constructor).

    Example:

    ```python
    class LabelSmoothingLog(keras_fastrain.parts.Part):
        name = "label_smoothing_log"

        def on_run(self, plan):
            if plan.method == "fit":
                plan.callbacks.append(keras.callbacks.CSVLogger("log.csv"))

    model = keras_fastrain.FastModel(inputs, outputs, parts=[LabelSmoothingLog()])
    ```
    """

    name = "part"
    # FastModel's options this part reads, with their defaults: FastModel
    # (and its `compile`) takes them, and the part checks and saves them.
    options: typing.ClassVar[dict] = {}

    def check_option(self, name, value):
        """Raises if `value` is not allowed for the option `name` (given to
        FastModel or its `compile`), naming the option and what is allowed."""
        del name, value

    def saved_option(self, name, value):
        """What `get_config` saves for the option: by default `value`."""
        del name
        return value

    def constraints(self, plan):
        """Returns the `Constraint`s this part puts on other choices.

        Args:
            plan: The `CompilePlan` or `RunPlan` of the event.
        """
        del plan
        return ()

    def on_compile(self, plan):
        """Acts before `keras.Model.compile`.

        Args:
            plan: The `CompilePlan`.
        """

    def on_run(self, plan):
        """Acts before `keras.Model.fit`, `evaluate` or `predict`.

        Args:
            plan: The `RunPlan`; `plan.method` says which call it is.
        """

    def get_config(self):
        """The part's configuration, for saving a model that uses it."""
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}()"


class _Plan:
    """What both plans share: the model, its engine, choices and contexts."""

    def __init__(self, model, parts, options, engine, verbose):
        self.model = model
        self.parts = parts
        self.options = options
        self.engine = engine
        self.verbose = verbose
        self.stack = contextlib.ExitStack()
        self._decided = []

    def decide(self, choice):
        """Records `choice` (a `keras_fastrain.choices.Choice`) in `model.choices`."""
        self.model._choices[choice.option] = choice
        self._decided.append(choice)

    def constraints_on(self, option):
        """Every part's `Constraint`s on `option` now, in the parts' order."""
        found = []
        for part in self.parts:
            found += [c for c in part.constraints(self) if c.option == option]
        return found

    def hold(self, context):
        """Enters `context` until Keras's call returns; returns its value."""
        return self.stack.enter_context(context)


class CompilePlan(_Plan):
    """What `FastModel.compile` is about to do; the parts fill it in.

    Attributes:
        model: The FastModel.
        options: Dict of FastModel's options (`distribute`, `jit_compile`,
            ...), as the user gave them or `"auto"`.
        engine: The `keras_fastrain.distribute.Engine` (set by the engine
            part, first in order).
        optimizer: What `keras.Model.compile` will get as `optimizer`.
        compile_kwargs: Dict of `keras.Model.compile`'s other arguments;
            parts set `jit_compile` and `steps_per_execution` here.
        parts: List of the parts, in order.
        verbose: Whether decisions are shown to the user.
    """

    def __init__(self, model, parts, options, optimizer, compile_kwargs, verbose=1):
        super().__init__(model, parts, options, None, verbose)
        self.optimizer = optimizer
        self.compile_kwargs = compile_kwargs


class RunPlan(_Plan):
    """What `fit`, `evaluate` or `predict` is about to do; parts fill it in.

    Attributes:
        model: The FastModel.
        method: String. `"fit"`, `"evaluate"` or `"predict"`.
        x, y: The data, as Keras will receive it.
        batch_size: The `batch_size` Keras will receive (the global batch
            until the workers' part gives each worker its share).
        global_batch_size: Integer or `None`. The global batch of the run,
            once decided; callbacks that need it get it through their
            `set_batch_size` method, unless `batch_size_varies`.
        batch_size_varies: Bool. Whether the batch changes during the run
            (a growing batch): then no callback is told one batch size.
        kwargs: Dict of Keras's other arguments (`epochs`, `callbacks`,
            `validation_data`, ...).
        results: List of functions applied, in order, to what Keras returns.
        parts: List of the parts, in order.
        start: The `keras_fastrain.snapshot.ModelSnapshot` of the model
            before the first measurement whose training the fit keeps
            (`keep_start`), or `None`.
    """

    def __init__(self, model, parts, method, x, y, batch_size, kwargs, verbose=1):
        super().__init__(model, parts, model._fastrain_options, model._engine, verbose)
        self.method = method
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.global_batch_size = None
        self.batch_size_varies = False
        self.kwargs = kwargs
        if isinstance(kwargs.get("callbacks"), (list, tuple)):
            kwargs["callbacks"] = list(kwargs["callbacks"])  # the user's list stays as given
        self.results = []
        self.start = None

    def keep_start(self, x):
        """Takes the model's state (a `ModelSnapshot`; `x` builds an
        unbuilt model) before the first measurement whose training the fit
        keeps, once per call, when a later measurement must see the model
        as the user gave it (the learning-rate test, `learning_rate` set):
        it runs from it, in `from_start`, which lets it go."""
        if self.start is None and self.options.get("learning_rate") is not None:
            self.start = ModelSnapshot(self.model, x)

    @contextlib.contextmanager
    def from_start(self, x):
        """Runs the block from the model's state before any kept
        measurement (if one trained it), then puts the trained state back."""
        if self.start is None:
            yield
            return
        trained = ModelSnapshot(self.model, x)
        self.start.restore()
        try:
            yield
        finally:
            trained.restore()
            self.start = None  # a copy of the model is not held through the fit

    @property
    def callbacks(self):
        """The list of the call's callbacks (created on first use; the
        `keras.callbacks.CallbackList` that `fit` hands its own `evaluate`
        stays as it is)."""
        callbacks = self.kwargs.get("callbacks")
        if callbacks is None:
            callbacks = self.kwargs["callbacks"] = []
        return callbacks
