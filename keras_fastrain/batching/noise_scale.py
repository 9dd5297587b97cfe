"""The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of
Large-Batch Training"), measured on a Keras model.

For a loss whose per-sample gradients have mean `G` and covariance `Sigma`,
a batch of `B` samples gives a gradient whose expected squared norm is
`|G|^2 + tr(Sigma) / B`. Measured at two batch sizes, `B_small < B_big`,
that gives both unknowns (their Appendix A.1):

    |G|^2     = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

and the simple noise scale `B_noise = tr(Sigma) / |G|^2`: the batch size
below which a step is dominated by noise (so a larger batch would help) and
above which it is not (so a larger batch mostly costs compute). Both
estimates are unbiased but noisy, so they are averaged over several batches
before the ratio is taken.

Here one batch of `B_big` samples is split into `parts` equal parts: each
part's gradient gives `|G_small|^2` (averaged over the parts), and their mean
is the whole batch's gradient, so the measurement costs one forward and
backward pass over `B_big` samples.
"""

import functools
import weakref

import keras
import numpy as np

from keras_fastrain import _keras_internals

__all__ = [
    "measure_noise_scale",
    "noise_scale_from_norms",
    "NoiseScaleEstimate",
    "split_gradient_sq_norms",
]

# The smallest batch a noise measurement uses: one far below the noise scale
# measures mostly noise.
PROBE_BATCH_SIZE = 256


def noise_scale_from_norms(small_sq_norm, big_sq_norm, small_batch, big_batch):
    """Returns `(true_gradient_sq_norm, trace_of_covariance)` estimated from
    the squared gradient norms at two batch sizes (see the module docstring)."""
    if not 0 < small_batch < big_batch:
        raise ValueError(
            f"Expected 0 < small_batch < big_batch. Received: small_batch={small_batch}, "
            f"big_batch={big_batch}."
        )
    gradient = (big_batch * big_sq_norm - small_batch * small_sq_norm) / (big_batch - small_batch)
    trace = (small_sq_norm - big_sq_norm) / (1 / small_batch - 1 / big_batch)
    return gradient, trace


class NoiseScaleEstimate:
    """Accumulates measurements; `value` is `B_noise` from their means."""

    def __init__(self):
        self.gradient_sq_norms = []
        self.traces = []

    def add(self, small_sq_norm, big_sq_norm, small_batch, big_batch):
        gradient, trace = noise_scale_from_norms(small_sq_norm, big_sq_norm, small_batch, big_batch)
        self.gradient_sq_norms.append(gradient)
        self.traces.append(trace)

    def means(self):
        return float(np.mean(self.gradient_sq_norms)), float(np.mean(self.traces))

    @staticmethod
    def ratio(gradient_sq_norm, trace):
        """`trace / gradient_sq_norm`; infinite when the gradient is lost in
        the noise (its estimate is zero or below)."""
        if gradient_sq_norm <= 0:
            return float("inf")
        return max(trace, 0.0) / gradient_sq_norm

    @property
    def value(self):
        return self.ratio(*self.means())


def split_gradient_sq_norms(model, batch, parts=4):
    """Measures `(|G_small|^2, |G_big|^2)` on one batch of a compiled model.

    Args:
        model: A compiled `keras.Model` (its `compute_loss` is used, so
            the loss, its weighting and the model's added losses are those
            of training).
        batch: A tuple `(x, y)` or `(x, y, sample_weight)` of arrays whose
            length is a multiple of `parts`.
        parts: Integer >= 2. The batch is split into this many parts.

    Returns:
        `(mean squared norm of the parts' gradients, squared norm of their
        mean)`: the squared gradient norms at `len / parts` and `len`.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
    size = len(keras.tree.flatten(x)[0])
    step = size // parts
    gradients = []
    for part in range(parts):
        cut = functools.partial(_rows, rows=slice(part * step, (part + 1) * step))
        gradients.append(
            _gradient(
                model,
                keras.tree.map_structure(cut, x),
                keras.tree.map_structure(cut, y),
                cut(sample_weight),
            )
        )
    small = float(np.mean([sum(np.sum(g * g) for g in grads) for grads in gradients]))
    mean = [np.mean(group, axis=0) for group in zip(*gradients, strict=True)]
    big = float(sum(np.sum(g * g) for g in mean))
    return small, big


def _rows(array, rows):
    return None if array is None else array[rows]


# Each model's compiled gradient function (TensorFlow, JAX); gone with the model.
_COMPILED_GRADIENTS = weakref.WeakKeyDictionary()


def _gradient(model, x, y, sample_weight):
    """The loss gradient for each trainable variable, as numpy arrays, in
    training mode, without changing any variable."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_gradient(model, x, y, sample_weight)
    if backend == "jax":
        return _jax_gradient(model, x, y, sample_weight)
    if backend == "torch":
        return _torch_gradient(model, x, y, sample_weight)
    raise NotImplementedError(f"No gradient measurement for the {backend} backend.")


def _tensorflow_gradient(model, x, y, sample_weight):
    import tensorflow as tf

    gradient = _COMPILED_GRADIENTS.get(model)
    if gradient is None:  # traced once per model (and batch shape), as fit's step is
        model_ref = weakref.ref(model)  # the cache must not keep the model alive

        @tf.function(reduce_retracing=True)
        def gradient(x, y, sample_weight):
            model = model_ref()
            variables = [v.value for v in model.trainable_variables]
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            return [
                tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                for v, g in zip(variables, tape.gradient(loss, variables), strict=True)
            ]

        _COMPILED_GRADIENTS[model] = gradient
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        # A strategy's variables are read in a replica's context; each
        # replica measures the same batch here (no collective), keep one.
        with strategy.scope():
            results = strategy.run(gradient, args=(x, y, sample_weight))
        return [g.numpy() for g in strategy.experimental_local_results(results)[0]]
    return [g.numpy() for g in gradient(x, y, sample_weight)]


def _jax_gradient(model, x, y, sample_weight):
    import jax

    from keras_fastrain.devices import host_array

    # Values are taken to this process (a multi-process model's variables
    # are spread over processes): each worker measures its own batch.
    trainable = [host_array(v) for v in model.trainable_variables]
    non_trainable = [host_array(v) for v in model.non_trainable_variables]
    metrics = [host_array(v) for v in model.metrics_variables]
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    # A loss-scaling optimizer scales the loss; the noise scale, a ratio of
    # squared norms, does not change with that scale.
    optimizer_values = [host_array(v) for v in model.optimizer.variables]
    gradient = _COMPILED_GRADIENTS.get(model)
    if gradient is None:  # compiled once per model (and batch shape), as fit's step is
        model_ref = weakref.ref(model)  # the cache must not keep the model alive

        def loss(trainable_values, non_trainable, metrics, optimizer_values, x, y, sample_weight):
            value, _ = model_ref().compute_loss_and_updates(
                trainable_values,
                non_trainable,
                metrics,
                x,
                y,
                sample_weight,
                training=True,
                optimizer_variables=optimizer_values,
            )
            return value

        gradient = _COMPILED_GRADIENTS[model] = jax.jit(jax.grad(loss))
    values = gradient(trainable, non_trainable, metrics, optimizer_values, x, y, sample_weight)
    return [np.asarray(g, "float32") for g in values]


def _torch_gradient(model, x, y, sample_weight):
    import torch

    variables = [v.value for v in model.trainable_variables]
    for variable in variables:
        variable.grad = None
    y_pred = model(x, training=True)
    loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
    gradients = torch.autograd.grad(loss, variables, allow_unused=True)
    return [
        np.zeros(tuple(v.shape), "float32") if g is None else g.detach().cpu().numpy()
        for v, g in zip(variables, gradients, strict=True)
    ]


def measure_noise_scale(model, batches, engine=None, parts=4):
    """`B_noise` of a compiled model, from `batches` of its training data.

    Args:
        model: A compiled `keras.Model`.
        batches: Iterable of `(x, y)` or `(x, y, sample_weight)` batches of
            arrays (of at least `parts` rows; the rows past a multiple of
            `parts` are left out).
        engine: A `keras_fastrain.distribute.Engine` or `None`. With
            several workers the squared norms are averaged over them before
            the ratio is taken, so every worker gets the same value.
        parts: Integer >= 2. Each batch is split into this many parts.

    Returns:
        Float: the noise scale in samples; infinite when the gradient is
        lost in the noise.
    """
    _keras_internals.sync_jax_state(model)
    estimate = NoiseScaleEstimate()
    for batch in batches:
        rows = len(keras.tree.flatten(batch)[0]) // parts * parts  # the rows split uses
        small, big = split_gradient_sq_norms(model, batch, parts=parts)
        estimate.add(small, big, rows // parts, rows)
    gradient, trace = estimate.means()
    if engine is not None and engine.size > 1:
        gradient, trace = (float(v) for v in engine.allreduce(np.array([gradient, trace]), "mean"))
    return NoiseScaleEstimate.ratio(gradient, trace)
