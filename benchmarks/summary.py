"""The README's results table, made from `benchmarks/results/*.json`.

One row per benchmark and backend: its headline figure, when and where it
was measured (date, machine, Keras and backend versions). `benchmarks/run_all`
calls it after running every benchmark; tests/test_benchmark_summary.py
checks that README.md holds the table the committed results give.

    python benchmarks/summary.py                 # print the table
    python benchmarks/summary.py --write README.md
"""

import argparse
import glob
import json
import os

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BEGIN = "<!-- results-table:begin (benchmarks/summary.py writes this table) -->"
END = "<!-- results-table:end -->"
ORDER = (
    "demo",
    "time_to_accuracy",
    "time_to_accuracy_cnn",
    "time_to_accuracy_cnn_methods",
    "time_to_accuracy_cnn_pooled",
    "time_to_accuracy_cnn_auto",
    "tuning",
    "augmentation_throughput",
    "compile_options",
    "callback_overhead",
    "pruning",
    "scaling",
)


# Results saved under another name than their script's.
SCRIPTS = {
    "time_to_accuracy_cnn_methods": "time_to_accuracy_cnn",
    "time_to_accuracy_cnn_pooled": "time_to_accuracy_cnn",
    "time_to_accuracy_cnn_auto": "time_to_accuracy_cnn",
}


def _seconds(value):
    return "-" if value is None else f"{value:.1f} s"


def _ratio(value):
    return "-" if value is None else f"{value:.1f}x"


def demo(result):
    runs = result["runs"]
    plain, fast = runs[0], runs[-1]
    ratio = (
        plain["time_to_target"] / fast["time_to_target"]
        if plain["time_to_target"] and fast["time_to_target"]
        else None
    )
    return (
        f"time to {result['target']:g} test accuracy: {plain['name']} "
        f"{_seconds(plain['time_to_target'])}, {fast['name']} "
        f"{_seconds(fast['time_to_target'])} ({_ratio(ratio)})"
    )


def _time_to_accuracy(result):
    rows = result["results"]
    base = rows[0]
    ours = [
        r
        for r in rows
        if r["method"].startswith(
            (
                "keras-fastrain",
                "ema=",
                "label_smoothing=",
                "selective_backprop=",
                "layer_freezing=",
                "progressive_resizing=",
            )
        )
        or '="auto"' in r["method"]
    ]
    parts = []
    for row in ours:
        text = f"{row['method']} {_seconds(row['median_seconds'])}"
        if row["median_seconds"] is None:
            parts.append(text + f" (reached {row['reached']})")
            continue
        text += f" ({_ratio(row['speedup_vs_baseline'])}"
        if row.get("baseline"):  # a method with a baseline of its own
            other = next(r for r in rows if r["method"] == row["baseline"])
            text += f" against {other['method']} {_seconds(other['median_seconds'])}"
        if row.get("speedup_vs_best_fixed") is not None:
            text += f"; {_ratio(row['speedup_vs_best_fixed'])} the best fixed batch"
        parts.append(text + ")")
    return (
        f"median time to {result['target']:g} test accuracy: {base['method']} "
        f"{_seconds(base['median_seconds'])}, " + ", ".join(parts)
    )


def time_to_accuracy(result):
    return _time_to_accuracy(result) + " [MLP]"


def time_to_accuracy_cnn(result):
    augmented = "augmented, " if result.get("augmentation") else ""
    repeats = max((len(r) for r in result.get("repeats", {}).values()), default=0)
    counted = f", {repeats} repeat{'s' * (repeats != 1)}" if repeats else ""
    return _time_to_accuracy(result) + (
        f" [conv net, {augmented}{result['train_samples']:,} images{counted}]"
    )


def time_to_accuracy_cnn_methods(result):
    """A run of some of the conv-net benchmark's methods, with its own baseline."""
    return time_to_accuracy_cnn(result)


def time_to_accuracy_cnn_pooled(result):
    """The conv net with global pooling, plain and with progressive resizing."""
    return time_to_accuracy_cnn(result)


def time_to_accuracy_cnn_auto(result):
    """Plain Keras against every automatic choice together, in one run."""
    return time_to_accuracy_cnn(result)


def tuning(result):
    plain, fast = result["results"]
    return (
        f"RandomSearch, time to find a model above {result['target']:g}: "
        f"{_seconds(plain['median_seconds_to_find'])} without, "
        f"{_seconds(fast['median_seconds_to_find'])} with keras-fastrain "
        f"({_ratio(fast['speedup_to_find'])}); whole search "
        f"{_seconds(plain['median_search_seconds'])} / {_seconds(fast['median_search_seconds'])}"
    )


def augmentation_throughput(result):
    rows = result["results"]
    return "images/s against ImageDataGenerator.flow: " + ", ".join(
        f"{r['configuration']} {_ratio(r['speedup'])}" for r in rows[1:]
    )


def compile_options(result):
    # Keras's defaults: XLA on JAX, not on TensorFlow; one step per call.
    keras_jit = result["backend"] == "jax"
    rows = [r for r in result["results"] if r["batch_size"] == 32]
    default = next(
        r for r in rows if r["jit_compile"] == keras_jit and r["steps_per_execution"] == 1
    )
    best = max(rows, key=lambda r: r["speedup"])
    return (
        f"epoch at batch 32: jit_compile={best['jit_compile']}, "
        f"steps_per_execution={best['steps_per_execution']} "
        f"{_ratio(best['speedup'] / default['speedup'])} faster than Keras's defaults"
    )


def callback_overhead(result):
    return "epoch time against no callback: " + ", ".join(
        f"{r['configuration']} {r['overhead_median']:+.1%}".replace(
            "no callback (A/A control)", "A/A noise"
        )
        for r in result["results"][1:]
    )


def pruning(result):
    ours = result["keras_fastrain"]
    text = (
        f"{result['settings'].get('sparsity', 0.8):.0%} sparse: accuracy "
        f"{ours['pruned_accuracy']:.4f} (dense {ours['dense_accuracy']:.4f}), size "
        f"{ours['size_ratio']:.2f}x gzipped ({ours['int8_size_ratio']:.2f}x with int8), "
        f"training {ours['time_overhead']:+.0%}"
    )
    if "tfmot" in result:
        text += f" (tfmot on tf_keras {result['tfmot']['time_overhead']:+.0%})"
    if "in_step" in ours:
        text += (
            f"; pruned in the step with no callback: "
            f"{ours['in_step']['in_step_over_callback']:.2f}x the callback's time"
        )
    return text


def scaling(result):
    text = "2 workers against 1 process on this host: " + ", ".join(
        f"{engine} {_ratio(figures['speedup'])}" for engine, figures in result["engines"].items()
    )
    # An engine with one global copy of the weights (JAX) runs no check.
    checks = [
        f"{engine} {figures['agreement_check']['share_of_epoch']:.2%}"
        for engine, figures in result["engines"].items()
        if figures.get("agreement_check", {}).get("seconds", 0) > 1e-4
    ]
    if checks:
        text += "; weight-agreement check per epoch: " + ", ".join(checks)
    return text


def load_results(results_dir=RESULTS_DIR):
    """Every results JSON, as (benchmark name, result), in table order."""
    found = []
    for path in glob.glob(os.path.join(results_dir, "*.json")):
        with open(path) as json_file:
            result = json.load(json_file)
        name = result.get("benchmark") or os.path.basename(path).removesuffix(".json")
        found.append((name, result))
    rank = {name: index for index, name in enumerate(ORDER)}
    found.sort(key=lambda item: (rank.get(item[0], len(ORDER)), item[1].get("backend", "")))
    return found


def table(results_dir=RESULTS_DIR):
    """The results table as Markdown."""
    lines = [
        "| benchmark | backend | result | measured |",
        "|---|---|---|---|",
    ]
    for name, result in load_results(results_dir):
        headline = globals()[name](result) if name in ORDER else "(no summary)"
        versions = f"Keras {result.get('keras_version', '?')}"
        if result.get("backend_version"):
            versions += f", {result['backend']} {result['backend_version']}"
        measured = f"{result.get('date', '?')[:10]}, {result.get('machine', '?')}, {versions}"
        script = "make demo" if name == "demo" else f"{SCRIPTS.get(name, name)}.py"
        lines.append(f"| `{script}` | {result.get('backend', '?')} | {headline} | {measured} |")
    return "\n".join(lines)


def write_readme(path, results_dir=RESULTS_DIR):
    """Replaces the table between the markers in the README at `path`."""
    with open(path) as readme:
        text = readme.read()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path} has no results-table markers ({BEGIN} ... {END}).")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as readme:
        readme.write(f"{head}{BEGIN}\n{table(results_dir)}\n{END}{tail}")
    print(f"Wrote the results table into {path}.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="README", help="replace the table in this file")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    args = parser.parse_args()
    if args.write:
        write_readme(args.write, args.results_dir)
    else:
        print(table(args.results_dir))


if __name__ == "__main__":
    main()
