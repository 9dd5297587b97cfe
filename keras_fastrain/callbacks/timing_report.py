"""The numbers of a TimingProfiler run: per-step statistics, the columns it
writes, and the compact text table of its summary."""

import importlib.util
import statistics

from keras_fastrain import flops as flops_module

__all__ = [
    "CSV_COLUMNS",
    "format_summary",
    "require_tensorboard",
    "step_statistics",
    "training_cost",
    "write_scalars",
]

CSV_COLUMNS = (
    "epoch",
    "epoch_time",
    "train_time",
    "validation_time",
    "steps",
    "steps_per_sec",
    "samples_per_sec",
    "step_mean",
    "step_median",
    "step_p90",
    "step_max",
    "data_wait",
)


def _percentile(values, q):
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def step_statistics(step_times):
    """Returns mean, median, p90 and max of per-step seconds (or `None`s if empty)."""
    if not step_times:
        return {"step_mean": None, "step_median": None, "step_p90": None, "step_max": None}
    return {
        "step_mean": statistics.fmean(step_times),
        "step_median": statistics.median(step_times),
        "step_p90": _percentile(step_times, 0.9),
        "step_max": max(step_times),
    }


def _fmt(value, scale=1.0, digits=1, suffix=""):
    return "n/a" if value is None else f"{value * scale:,.{digits}f}{suffix}"


def format_summary(summary):
    """Returns the compact text table of a `TimingProfiler.summary()` dict."""
    lines = [
        f"TimingProfiler: {summary['backend']}, {len(summary['devices'])} device(s) "
        f"{', '.join(summary['devices'])}, {summary['precision_policy']}, "
        f"jit_compile={summary['jit_compile']}, "
        f"steps_per_execution={summary['steps_per_execution']}, mode={summary['mode']}",
        f"{'epoch':>5} {'time s':>8} {'train s':>8} {'val s':>7} {'steps/s':>9} "
        f"{'samples/s':>10} {'step ms (mean/median/p90/max)':>30} {'data wait s':>11}",
    ]
    for row in summary["epochs"]:
        step_ms = "n/a"
        if row["step_mean"] is not None:
            step_ms = "/".join(
                _fmt(row[key], 1e3, 2)
                for key in ("step_mean", "step_median", "step_p90", "step_max")
            )
        lines.append(
            f"{row['epoch']:>5} {row['epoch_time']:>8.2f} {row['train_time']:>8.2f} "
            f"{row['validation_time']:>7.2f} {_fmt(row['steps_per_sec']):>9} "
            f"{_fmt(row['samples_per_sec'], digits=0):>10} {step_ms:>30} "
            f"{_fmt(row['data_wait'], digits=2):>11}"
        )
    setup = summary.get("setup") or {"seconds": 0.0, "parts": []}
    if setup["parts"]:
        parts = ", ".join(f"{p['what']} {p['seconds']:.2f} s" for p in setup["parts"])
        lines.append(f"set-up before the first step: {setup['seconds']:.2f} s ({parts})")
    steady = summary["steady_state"]
    if summary["first_step_seconds"] is not None:
        first = f"first step (tracing/compilation): {summary['first_step_seconds']:.3f} s"
    else:
        first = (
            "first epoch (includes tracing/compilation): "
            f"{_fmt(summary['first_epoch_seconds'], 1, 2, ' s')}"
        )
    lines.append(
        f"{first}; steady state: {_fmt(steady['steps_per_sec'])} steps/s, "
        f"{_fmt(steady['samples_per_sec'], digits=0)} samples/s, "
        f"median step {_fmt(steady['step_median'], 1e3, 2, ' ms')}"
    )
    wait = summary["data_wait"]
    if wait["available"]:
        lines.append(
            f"data wait: {wait['seconds']:.2f} s ({_fmt(wait['fraction'], 100, 1, '%')} "
            "of training time)"
        )
    else:
        lines.append(f"data wait: not measured ({wait['reason']})")
    cost = summary["cost"]
    bound = "" if cost["flops_complete"] else " (lower bound: some layers unknown)"
    lines.append(
        f"cost: {cost['train_flops_per_sample'] / 1e6:,.3f} MFLOP per sample to train"
        f"{bound}; achieved {_fmt(cost['achieved_flops_per_sec'], 1e-9, 2, ' GFLOP/s')}"
        + (
            f" = {cost['utilization']:.1%} of {cost['peak_flops_per_sec'] / 1e9:,.1f} GFLOP/s "
            f"({cost['peak_source']})"
            if cost["utilization"] is not None
            else ""
        )
    )
    lines.append(
        f"{'layer':<28} {'kind':<20} {'params':>10} {'share':>6} {'MFLOP':>10} {'share':>6}"
    )
    for layer in cost["layers"]:
        lines.append(
            f"{layer['name'][:28]:<28} {layer['kind'][:20]:<20} {layer['params']:>10,} "
            f"{layer['param_share']:>6.1%} {_fmt(layer['flops'], 1e-6, 3):>10} "
            f"{_fmt(layer['flop_share'], 100, 1, '%'):>6}"
        )
    workers = summary["workers"]
    if workers["count"] > 1:
        lines.append(
            f"workers: {workers['count']}; straggler ratio (slowest/fastest mean step) "
            f"{_fmt(workers['straggler_ratio'], digits=2)}"
        )
    return "\n".join(lines)


def training_cost(model, samples_per_sec, peak, peak_source):
    """The FLOPs a training sample costs, layer by layer, and the FLOP/s
    achieved at `samples_per_sec` against `peak` (FLOP/s or `None`)."""
    layers = flops_module.model_costs(model)
    known = [layer.flops for layer in layers if layer.flops is not None]
    forward = sum(known)
    total_params = sum(layer.params for layer in layers)
    train = forward * flops_module.TRAIN_FLOPS_PER_FORWARD_FLOP
    achieved = train * samples_per_sec if samples_per_sec else None
    return {
        "forward_flops_per_sample": forward,
        "train_flops_per_sample": train,
        "flops_complete": len(known) == len(layers),
        "achieved_flops_per_sec": achieved,
        "peak_flops_per_sec": peak,
        "peak_source": None if peak is None else peak_source,
        "utilization": achieved / peak if achieved and peak else None,
        "layers": [
            {
                "name": layer.name,
                "kind": layer.kind,
                "params": layer.params,
                "param_share": layer.params / total_params if total_params else 0.0,
                "flops": layer.flops,
                "flop_share": (
                    layer.flops / forward if layer.flops is not None and forward else None
                ),
            }
            for layer in layers
        ],
    }


def require_tensorboard():
    """Raises `ImportError` saying what to install when TensorBoard files
    cannot be written (`TimingProfiler(log_dir=...)`)."""
    missing = [
        name for name in ("tensorflow", "tensorboard") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ImportError(
            "TimingProfiler(log_dir=...) writes TensorBoard files with tf.summary, "
            f"which needs {' and '.join(missing)}: run `pip install {' '.join(missing)}`, "
            "or leave log_dir=None."
        )


def write_scalars(writer, row):
    """Writes one epoch's timings to a `tf.summary` file `writer`."""
    import tensorflow as tf

    with writer.as_default():
        for key in (
            "epoch_time",
            "train_time",
            "validation_time",
            "steps_per_sec",
            "samples_per_sec",
            "step_median",
            "data_wait",
        ):
            if row[key] is not None:
                tf.summary.scalar(f"timing/{key}", row[key], step=row["epoch"])
    writer.flush()
