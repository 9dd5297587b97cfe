"""Every public class and function has a complete docstring.

Complete means: a docstring; an `Args:` section naming each parameter (for a
class, those of its `__init__`; a dataclass's fields are its parameters),
unless it takes none besides `self`, `*args` and `**kwargs`; and an
`Example:` (or `Examples:`) section. Enum classes need no `Args:`: their
members are their values.
"""

import enum
import inspect
import re

import pytest

import keras_fastrain
import keras_fastrain.batching
import keras_fastrain.callbacks
import keras_fastrain.distribute
import keras_fastrain.horovod
import keras_fastrain.pruning
import keras_fastrain.tuner

pytestmark = pytest.mark.smoke

PUBLIC_MODULES = [
    keras_fastrain,
    keras_fastrain.callbacks,
    keras_fastrain.distribute,
    keras_fastrain.horovod,
    keras_fastrain.horovod.callbacks,
    keras_fastrain.pruning,
    keras_fastrain.batching,
    keras_fastrain.tuner,
]

# A section heading: a line of its own, not indented, ending with a colon.
_HEADING = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
# An entry of an Args section: `name: ...`, `name (type): ...`, `x, y: ...`.
_ENTRY = re.compile(r"^\s*(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?:\([^)]*\))?\s*:")
_NOT_ARGS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def public_callables():
    """`(qualified name, object)` for each public class and function, once each."""
    found, seen = [], set()
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            found.append((f"{module.__name__}.{name}", obj))
    return found


def sections(doc):
    """Maps each section heading of a cleaned docstring to its lines."""
    result, current = {}, None
    for line in doc.splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = result.setdefault(heading.group(1), [])
        elif current is not None:  # unindented lines too: an example's code fence
            current.append(line)
    return result


def documented_args(lines):
    """The names an Args section describes, from its least indented entries."""
    entries = [line for line in lines if line.strip() and line[0].isspace()]
    if not entries:
        return set()
    indent = min(len(line) - len(line.lstrip()) for line in entries)
    names = set()
    for line in entries:
        if len(line) - len(line.lstrip()) != indent:
            continue
        entry = _ENTRY.match(line)
        if entry:
            names.update(name.strip().lstrip("*") for name in entry.group(1).split(","))
    return names


def parameters(obj):
    """The parameters to document (of `__init__` for a class), bar self, *args, **kwargs."""
    if inspect.isclass(obj) and issubclass(obj, enum.Enum):
        return []
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature
        return []
    names = [p.name for p in signature.parameters.values() if p.kind not in _NOT_ARGS]
    if inspect.isclass(obj) and names and names[0] in ("self", "cls"):
        names = names[1:]
    return names


def missing_parts(obj):
    """What `obj`'s docstring lacks, as short phrases; empty when complete."""
    raw = obj.__doc__
    if not raw or not raw.strip():
        return ["a docstring"]
    found = sections(inspect.cleandoc(raw))
    missing = []
    wanted = parameters(obj)
    if wanted:
        if "Args" not in found:
            missing.append(f"an Args section (for {', '.join(wanted)})")
        else:
            absent = [name for name in wanted if name not in documented_args(found["Args"])]
            if absent:
                missing.append(f"Args entries for {', '.join(absent)}")
    example = found.get("Example", found.get("Examples"))
    if example is None:
        missing.append("an Example section")
    elif not any(line.strip() for line in example):
        missing.append("content in its Example section")
    return missing


def test_public_callables_are_found():
    names = [name for name, _ in public_callables()]
    assert "keras_fastrain.callbacks.EarlyStopping" in names
    assert "keras_fastrain.FastModel" in names
    assert not any(name.endswith(".__version__") for name in names)
    assert len(names) == len(set(names))


def test_checker_accepts_a_complete_docstring():
    def sample(model, x, y=None, *extra, verbose=0, **options):
        """Does something.

        Args:
            model: A model.
            x, y: Arrays.
            verbose (int): Integer. Defaults to 0.
                model: a continuation line is not an entry.

        Returns:
            Nothing.

        Example:

        ```python
        sample(model, x)
        ```
        """

    assert missing_parts(sample) == []


def test_checker_reports_every_missing_part():
    def sample(model, x, verbose=0):
        """Does something.

        Args:
            model: A model.
                x: indented deeper, so not an entry.

        Returns:
            verbose: in another section, so not an entry.
        """

    def undocumented(model):
        pass

    assert missing_parts(sample) == ["Args entries for x, verbose", "an Example section"]
    assert missing_parts(undocumented) == ["a docstring"]


def test_every_public_callable_has_a_complete_docstring():
    offenders = [
        f"{name}: lacks {'; '.join(missing)}"
        for name, obj in public_callables()
        if (missing := missing_parts(obj))
    ]
    assert not offenders, "Incomplete docstrings:\n" + "\n".join(offenders)
