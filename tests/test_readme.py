"""Every Python block of README.md runs, in order, as a user would paste it."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.DOTALL | re.MULTILINE)


def test_readme_has_python_examples():
    assert len(python_blocks()) >= 3


@pytest.mark.smoke
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything a block writes lands here
    namespace = {"__name__": "__readme__"}
    for index, block in enumerate(python_blocks()):
        code = compile(block, f"README.md python block {index + 1}", "exec")
        exec(code, namespace)
