"""The demo: its arithmetic, its table, its checks, and a real run on a subset."""

import json

import pytest

import keras_fastrain
from keras_fastrain import demo
from keras_fastrain.cli import main
from tests.helpers import run_python_args

pytestmark = pytest.mark.smoke

PLAIN = demo.Recipe("plain Keras", 32, 1e-3, "classic")
FAST = demo.Recipe("keras-fastrain", 512, 4e-3, "fast", fast_model=True)


def result(recipe, seconds, accuracy, samples=600):
    return demo.RunResult(recipe, list(seconds), list(accuracy), samples)


def test_time_to_target_is_the_first_epoch_at_or_above_it():
    run = result(PLAIN, [10, 20, 30], [0.80, 0.87, 0.86])
    assert run.time_to_target(0.87) == 20
    assert run.time_to_target(0.80) == 10
    assert run.time_to_target(0.90) is None


def test_samples_per_second_counts_every_epoch():
    run = result(PLAIN, [1.0, 2.0, 4.0], [0.5, 0.6, 0.7], samples=1000)
    assert run.samples_per_second == pytest.approx(3000 / 4.0)


def test_table_shows_each_run_side_by_side():
    table = demo.format_table(
        [result(PLAIN, [10, 20], [0.86, 0.88]), result(FAST, [1, 2], [0.85, 0.86])],
        target=0.87,
    )
    header, rule, plain_row, fast_row = table.splitlines()
    assert "time to 0.87 test acc" in header and "samples/s" in header
    assert set(rule) == {"-"}
    assert plain_row.split() == ["plain", "Keras", "20.0", "s", "0.8800", "60", "2"]
    assert "not reached" in fast_row and "0.8600" in fast_row


@pytest.mark.parametrize(
    ("fast_accuracy", "plain_accuracy", "expected"),
    [
        (
            [0.9, 0.9],
            [0.8, 0.9],
            "keras-fastrain reached 0.87 test accuracy 20.0x sooner (1.0 s against 20.0 s).",
        ),
        ([0.8, 0.8], [0.8, 0.9], "keras-fastrain did not reach 0.87 test accuracy."),
        (
            [0.8, 0.9],
            [0.8, 0.8],
            "keras-fastrain reached 0.87 test accuracy in 2.0 s; plain Keras did not reach it.",
        ),
    ],
)
def test_speedup_sentence(fast_accuracy, plain_accuracy, expected):
    plain = result(PLAIN, [10, 20], plain_accuracy)
    fast = result(FAST, [1, 2], fast_accuracy)
    assert demo.speedup_line(plain, fast, 0.87) == expected


@pytest.mark.parametrize(
    ("fast_seconds", "expected"),
    [
        (
            [9.6, 19.2],
            "keras-fastrain reached 0.87 test accuracy 1.04x sooner (9.6 s against 10.0 s).",
        ),
        (
            [15.0, 30.0],
            "keras-fastrain reached 0.87 test accuracy later than plain Keras: in 1.50x its "
            "time (15.0 s against 10.0 s).",
        ),
    ],
)
def test_a_near_tie_reads_as_one_and_a_loss_as_a_loss(fast_seconds, expected):
    plain = result(PLAIN, [10, 20], [0.9, 0.9])
    fast = result(FAST, fast_seconds, [0.9, 0.9])
    assert demo.speedup_line(plain, fast, 0.87) == expected


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"target": 0},
            ValueError,
            r"`target`.*Received: target=0\.0\. Expected a number in \(0, 1\]",
        ),
        ({"target": 1.2}, ValueError, r"Received: target=1\.2"),
        ({"epochs": 0}, ValueError, r"`epochs`.*Received: epochs=0"),
        ({"subset": 0}, ValueError, r"`subset`.*Received: subset=0"),
        ({"seed": "x"}, TypeError, r"`seed`.*Received: seed='x'"),
        ({"out_dir": 3}, TypeError, r"`out_dir`.*Received: out_dir=3"),
    ],
)
def test_run_demo_checks_its_arguments_before_training(kwargs, error, message):
    with pytest.raises(error, match=message):
        demo.run_demo(**kwargs)


def test_fast_recipe_scales_the_learning_rate_with_the_batch_on_a_fast_model():
    plain, fast = demo.demo_recipes()
    assert (plain.batch_size, plain.learning_rate) == (32, 1e-3)
    assert fast.fast_model and not plain.fast_model
    assert isinstance(demo.baseline_model(fast_model=True), keras_fastrain.FastModel)
    assert not isinstance(demo.baseline_model(), keras_fastrain.FastModel)
    assert fast.batch_size > plain.batch_size
    assert fast.learning_rate == pytest.approx(1e-3 * (fast.batch_size / 32) ** 0.5)
    assert fast.grow_to > fast.batch_size and plain.grow_to is None


def test_demo_trains_both_sides_on_a_subset_and_saves_results(tmp_path):
    lines = []
    summary = demo.run_demo(
        target=0.6, epochs=2, out_dir=str(tmp_path), subset=1200, log=lines.append
    )
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert (summary["train_samples"], summary["test_samples"]) == (1200, 200)
    names = [run["name"] for run in summary["runs"]]
    assert names == ["plain Keras", "keras-fastrain"]
    for run in summary["runs"]:
        assert run["epochs"] == 2 and len(run["test_accuracy"]) == 2
        assert 0 < run["seconds"][0] < run["seconds"][1]
        assert all(0.0 <= acc <= 1.0 for acc in run["test_accuracy"])
        assert run["samples_per_second"] == pytest.approx(2400 / run["seconds"][-1])
    # The classic recipe takes 38 steps an epoch on 1200 images: it learns.
    assert summary["runs"][0]["final_test_accuracy"] > 0.6
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = "\n".join(lines)
    assert "[plain Keras] epoch 2/2" in text and "[keras-fastrain] epoch 1/2" in text
    assert "time to 0.6 test acc" in text and "Saved" in text


def test_command_line_demo_runs_end_to_end(tmp_path):
    result = run_python_args(
        [
            "-m",
            "keras_fastrain",
            "demo",
            "--subset",
            "600",
            "--epochs",
            "1",
            "--target",
            "0.3",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "final test acc" in result.stdout
    assert (tmp_path / "demo.json").exists() and (tmp_path / "demo.png").exists()


def test_command_line_prints_its_version():
    result = run_python_args(["-m", "keras_fastrain", "--version"])
    assert result.stdout.strip() == keras_fastrain.__version__


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--target",
            "2",
            "argument --target: Invalid value for argument `target`. Received: target=2.0",
        ),
        (
            "--epochs",
            "0",
            "argument --epochs: Invalid value for argument `epochs`. Received: epochs=0",
        ),
        ("--subset", "many", "argument --subset: invalid literal for int()"),
    ],
)
def test_command_line_rejects_bad_options(capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", option, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_command_line_needs_a_command(capsys):
    with pytest.raises(SystemExit):
        main([])
    assert "required: command" in capsys.readouterr().err
