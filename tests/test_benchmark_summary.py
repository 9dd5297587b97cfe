"""The README's results table is the one the committed benchmark results give."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.smoke


def load_summary():
    spec = importlib.util.spec_from_file_location("summary", ROOT / "benchmarks" / "summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_results_table_matches_the_results_files():
    summary = load_summary()
    readme = (ROOT / "README.md").read_text()
    block = readme.split(summary.BEGIN, 1)[1].split(summary.END, 1)[0].strip()
    assert block == summary.table(), (
        "README.md's results table is stale: run python benchmarks/summary.py --write README.md"
    )


def test_every_results_file_has_a_summary_and_its_measurement_context():
    summary = load_summary()
    results = summary.load_results()
    assert {name for name, _ in results} <= set(summary.ORDER)
    for name, result in results:
        assert result["date"] and result["machine"] and result["keras_version"], name
        assert getattr(summary, name)(result)  # a headline, no KeyError


def test_write_readme_replaces_only_the_table(tmp_path):
    summary = load_summary()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{summary.BEGIN}\nold table\n{summary.END}\noutro\n")
    summary.write_readme(readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{summary.END}\noutro\n")
    assert "old table" not in text and summary.table() in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        summary.write_readme(readme)
