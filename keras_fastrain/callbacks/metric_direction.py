"""Whether a Keras metric should go down or up, from its name."""

__all__ = ["infer_mode"]

# Metric names (after any `val_` prefix) whose direction is known, matched as
# a suffix: "val_sparse_categorical_accuracy" is maximized.
_MAXIMIZED = (
    "accuracy",
    "acc",
    "auc",
    "precision",
    "recall",
    "f1_score",
    "fbeta_score",
    "iou",
    "io_u",  # mean_io_u, binary_io_u, one_hot_mean_io_u, one_hot_io_u
    "r2_score",
    "cosine_similarity",
    "pearson_correlation",
    "concordance_correlation",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
)
_MINIMIZED = ("loss", "error", "crossentropy", "hinge", "divergence", "poisson", "logcosh")


def infer_mode(monitor):
    """Returns `"min"` or `"max"` from a metric name, or `None` if unknown."""
    name = monitor.removeprefix("val_")
    if name.endswith(_MINIMIZED) or name in ("mse", "mae", "mape", "msle", "rmse"):
        return "min"
    if name.endswith(_MAXIMIZED):
        return "max"
    return None
