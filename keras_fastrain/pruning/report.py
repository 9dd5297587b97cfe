"""What pruning bought: per-weight sparsity, compressed size, and int8.

Sizes are those of the model's weight arrays (`model.get_weights()`, as
`numpy.savez` writes them) after gzip, the measure tfmot's guides use with
an HDF5 file: zeros compress, so a pruned model shrinks although its arrays
keep their shape. (Keras 3's `save_weights` would also store a compiled
model's optimizer state, which is not the model's size.) Quantization is Keras
3's own post-training `model.quantize("int8")` (Dense, EinsumDense and
Embedding kernels become int8 with a float scale), applied to a copy.
"""

import dataclasses
import gzip
import io
import warnings

import keras
import numpy as np

from keras_fastrain import _keras_internals
from keras_fastrain.devices import host_array
from keras_fastrain.pruning.callbacks import pruning_wrappers
from keras_fastrain.pruning.registry import is_prunable, prunable_weights
from keras_fastrain.validation import check_bool

__all__ = [
    "compression_report",
    "CompressionReport",
    "gzipped_weights_size",
    "quantized_copy",
    "weight_sparsity",
]


def gzipped_weights_size(model):
    """Bytes of `model`'s weight arrays after gzip (optimizer state aside).

    Args:
        model: A `keras.Model` (or layer): its `get_weights()` are measured,
            as `numpy.savez` writes them.

    Returns:
        Integer. The size in bytes.

    Example:

    ```python
    from keras_fastrain.pruning import gzipped_weights_size, strip_pruning

    ratio = gzipped_weights_size(strip_pruning(pruned)) / gzipped_weights_size(dense)
    ```
    """
    buffer = io.BytesIO()
    np.savez(buffer, *model.get_weights())
    return len(gzip.compress(buffer.getvalue()))


def weight_sparsity(model):
    """`{weight path: fraction of zeros}` for the prunable weights of `model`.

    A model with pruning wrappers reports the weights they prune, from
    their masks; a model without (a plain or stripped one) reports every
    prunable weight of its built layers, counting its zeros.

    Args:
        model: A `keras.Model`, pruned (with `PruneLowMagnitude` wrappers)
            or plain.

    Returns:
        Dict of weight path (string) to float in [0, 1].

    Example:

    ```python
    for path, sparsity in keras_fastrain.pruning.weight_sparsity(model).items():
        print(f"{path}: {sparsity:.0%} zeros")
    ```
    """
    wrappers = pruning_wrappers(model)
    if wrappers:
        return {path: s for wrapper in wrappers for path, s in wrapper.sparsity().items()}
    return {
        weight.path: float((host_array(weight) == 0).mean())
        for layer in _keras_internals.all_layers(model)
        if is_prunable(layer) and layer.built
        for weight in prunable_weights(layer)
    }


@dataclasses.dataclass
class CompressionReport:
    """Sizes, sparsity and (optionally) accuracies of a pruned model.

    Made by `compression_report`; its fields are also its attributes.

    Args:
        sparsity: Dict of weight path to its fraction of zeros.
        pruned_bytes: Integer. The pruned (stripped) model's gzipped weights.
        dense_bytes: Integer or `None`. The dense model's gzipped weights.
            Defaults to `None`.
        int8_bytes: Integer or `None`. The same after `quantize("int8")`.
            Defaults to `None`.
        metrics: Dict of name (e.g. `"dense accuracy"`) to value. Defaults
            to `{}`.

    Example:

    ```python
    report = keras_fastrain.pruning.compression_report(pruned, dense=dense)
    print(report.table())
    print(f"{report.size_ratio:.2f}x the dense size", report.to_dict()["int8_bytes"])
    ```
    """

    sparsity: dict
    pruned_bytes: int
    dense_bytes: int = None
    int8_bytes: int = None
    metrics: dict = dataclasses.field(default_factory=dict)

    @property
    def size_ratio(self):
        """Pruned size over dense size, or `None` without a dense model."""
        return None if not self.dense_bytes else self.pruned_bytes / self.dense_bytes

    def table(self):
        """The report as text, one line a weight, then the sizes."""
        lines = [f"{'weight':40s} {'sparsity':>9s}"]
        lines += [f"{path:40s} {value:9.1%}" for path, value in self.sparsity.items()]
        sizes = [("dense", self.dense_bytes), ("pruned", self.pruned_bytes)]
        sizes.append(("pruned + int8", self.int8_bytes))
        for name, size in sizes:
            if size is not None:
                ratio = f" ({size / self.dense_bytes:.2f}x dense)" if self.dense_bytes else ""
                lines.append(f"gzipped weights, {name:14s} {size:>10,d} bytes{ratio}")
        lines += [f"{name}: {value:.4f}" for name, value in self.metrics.items()]
        return "\n".join(lines)

    def to_dict(self):
        return {**dataclasses.asdict(self), "size_ratio": self.size_ratio}


def quantized_copy(model):
    """A copy of a plain (stripped) model with int8 kernels
    (`model.quantize("int8")`); the model given is left as it is."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    with warnings.catch_warnings():  # layers without weights have nothing to quantize
        warnings.filterwarnings("ignore", message="Layer .* does not have a `quantize` method")
        copy.quantize("int8")
    return copy


def compression_report(pruned, dense=None, quantize=True, evaluate=None):
    """Measures a pruned model against its dense counterpart.

    Args:
        pruned: A pruned model (with wrappers, or already stripped).
        dense: The dense model, or `None`. Defaults to `None`. Train it
            apart: the model given to `prune_low_magnitude` shares its
            layers and weights with the pruned one.
        quantize: Bool. Also measure an int8 copy of the stripped model
            (Keras 3's `quantize("int8")`). Defaults to `True`.
        evaluate: `None`, or a function `model -> dict of metrics`, called
            on each model measured (e.g. test accuracy). Defaults to `None`.

    Returns:
        A `CompressionReport`. Its metrics are named after the model and
        the metric: `"pruned accuracy"`, `"dense accuracy"`,
        `"pruned + int8 accuracy"`.

    Example:

    ```python
    def accuracy(model):
        predicted = model.predict(x_test, verbose=0).argmax(axis=-1)
        return {"accuracy": (predicted == y_test).mean()}


    report = keras_fastrain.pruning.compression_report(pruned, dense=dense, evaluate=accuracy)
    print(report.table())
    ```
    """
    from keras_fastrain.pruning.prune import strip_pruning

    quantize = check_bool("quantize", quantize)
    if evaluate is not None and not callable(evaluate):
        raise TypeError(
            f"Invalid value for argument `evaluate`. Received: evaluate={evaluate!r}. "
            "Expected None or a function model -> dict of metrics."
        )
    stripped = strip_pruning(pruned) if pruning_wrappers(pruned) else pruned
    report = CompressionReport(
        sparsity=weight_sparsity(pruned),
        pruned_bytes=gzipped_weights_size(stripped),
        dense_bytes=None if dense is None else gzipped_weights_size(dense),
    )
    measured = [("pruned", stripped)] + ([] if dense is None else [("dense", dense)])
    if quantize:
        int8 = quantized_copy(stripped)
        report.int8_bytes = gzipped_weights_size(int8)
        measured.append(("pruned + int8", int8))
    if evaluate is not None:
        for name, model in measured:
            for metric, value in evaluate(model).items():
                report.metrics[f"{name} {metric}"] = float(np.asarray(value))
    return report
