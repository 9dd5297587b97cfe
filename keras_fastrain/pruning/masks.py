"""Which weights pruning keeps: magnitude, block and M-by-N masks.

Each function takes a weight tensor and returns a 0/1 mask of its shape and
dtype, computed with `keras.ops` on whatever device holds the weights, so it
runs on every backend. The rules are tfmot's, checked against it in the
tests:

- magnitude: keep the `k = max(round(n * (1 - sparsity)), 1)` largest `|w|`
  (every weight tied with the k-th is kept too); the count is computed in
  float32 with round-half-to-even, as tfmot does;
- block: the same on `|w|` pooled (`"AVG"` or `"MAX"`) over blocks of a 2-D
  weight, each block then kept or zeroed whole. Pooling pads like
  TensorFlow's `"SAME"` (more at the end; averages count real entries only)
  and the mask is laid back from the top-left corner, as tfmot lays it;
- M-by-N: in every run of `n` consecutive input-channel weights of an output
  channel, the `m` smallest `|w|` are zeroed (2:4 is what sparse tensor
  cores accelerate). Dense kernels `(in, out)` and Conv2D kernels
  `(h, w, in, out)` can take it.
"""

import numpy as np
from keras import ops

from keras_fastrain.devices import host_array
from keras_fastrain.validation import check_choice

__all__ = [
    "block_mask",
    "check_m_by_n",
    "kept_count",
    "m_by_n_mask",
    "magnitude_mask",
    "magnitude_mask_tensor",
]

POOLING_TYPES = ("AVG", "MAX")


def kept_count(size, sparsity):
    """How many of `size` weights a magnitude mask keeps at `sparsity`."""
    kept = np.round(np.float32(size) * (np.float32(1) - np.float32(sparsity)))
    return max(int(kept), 1)


def magnitude_mask(weights, sparsity):
    """Keeps the largest `|weights|`, zeroing the `sparsity` fraction.

    The k-th largest magnitude is found on the host with a linear-time
    partition and the comparison runs where the weights are: on a CPU,
    `top_k` or a sort through the backend costs 20-100 ms for a 100k-entry
    kernel (JAX also compiles `top_k` anew for every k), the partition under
    1 ms.

    Args:
        weights: Tensor, variable value or NumPy array of any shape.
        sparsity: Float in [0, 1]. The fraction of weights to zero. The
            `max(round(n * (1 - sparsity)), 1)` largest magnitudes are kept,
            and every weight tied with the smallest of them, so the mask
            may zero fewer.

    Returns:
        A 0/1 backend tensor of `weights`' shape and dtype.

    Example:

    ```python
    weights = np.array([[0.1, -2.0, 0.3], [0.5, 0.05, -0.7]], "float32")
    keras_fastrain.pruning.magnitude_mask(weights, 0.5)  # [[0, 1, 0], [1, 0, 1]]
    ```
    """
    magnitudes = ops.abs(weights)
    flat = np.abs(host_array(weights)).reshape(-1)
    k = kept_count(flat.size, sparsity)
    threshold = np.partition(flat, flat.size - k)[flat.size - k]
    return ops.cast(magnitudes >= ops.cast(threshold, magnitudes.dtype), weights.dtype)


def magnitude_mask_tensor(weights, sparsity):
    """`magnitude_mask` computed entirely with `keras.ops`, for use inside a
    compiled training step: the same rule, with `sparsity` a tensor.

    Args:
        weights: Tensor of any shape.
        sparsity: Float32 scalar tensor (or float) in [0, 1].

    Returns:
        `(mask, threshold)`: a 0/1 tensor of `weights`' shape and dtype, and
        the smallest magnitude it keeps.
    """
    magnitudes = ops.abs(weights)
    flat = ops.reshape(magnitudes, (-1,))
    size = int(flat.shape[0])
    kept = ops.cast(ops.round(np.float32(size) * (1.0 - ops.cast(sparsity, "float32"))), "int32")
    kept = ops.maximum(kept, 1)
    threshold = ops.take(ops.sort(flat), size - kept)
    return ops.cast(magnitudes >= threshold, weights.dtype), threshold


def _pool_axis(values, axis, block, pooling_type):
    """Pools one axis in windows of `block` (stride `block`), padded as
    TensorFlow's "SAME": the extra padding goes at the end."""
    size = int(values.shape[axis])
    blocks = -(-size // block)
    padding = blocks * block - size
    before = padding // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (before, padding - before)
    padded = ops.pad(values, pad)
    counts = ops.pad(ops.ones_like(values), pad)
    shape = list(padded.shape)
    shape[axis : axis + 1] = [blocks, block]
    if pooling_type == "MAX":  # |w| >= 0, so zero padding never wins
        return ops.max(ops.reshape(padded, shape), axis=axis + 1)
    total = ops.sum(ops.reshape(padded, shape), axis=axis + 1)
    return total / ops.sum(ops.reshape(counts, shape), axis=axis + 1)


def block_mask(weights, sparsity, block_size, pooling_type="AVG", in_step=False):
    """Keeps or zeroes whole `block_size` blocks of a 2-D weight.

    Blocks are ranked by their pooled magnitude, as `magnitude_mask` ranks
    single weights. Blocks at the bottom and right edges may be partial
    (pooling pads like TensorFlow's `"SAME"`).

    Args:
        weights: 2-D tensor, variable value or NumPy array (a Dense kernel).
        sparsity: Float in [0, 1]. The fraction of blocks to zero.
        block_size: Pair of integers `(height, width)`: the block's shape.
        pooling_type: `"AVG"` or `"MAX"`: how a block's magnitudes are
            pooled into one. Defaults to `"AVG"`.
        in_step: Bool. Rank the blocks with `keras.ops` only (inside a
            compiled step; `sparsity` may be a tensor). Defaults to `False`.

    Returns:
        A 0/1 backend tensor of `weights`' shape and dtype.

    Raises:
        ValueError: for weights that are not 2-D, or an unknown
            `pooling_type`.

    Example:

    ```python
    weights = np.array([[0.1, 0.2, 3.0, -4.0], [-5.0, 6.0, 0.3, 0.4]], "float32")
    keras_fastrain.pruning.block_mask(weights, 0.5, (1, 2))  # [[0, 0, 1, 1], [1, 1, 0, 0]]
    ```
    """
    pooling_type = check_choice("block_pooling_type", pooling_type, POOLING_TYPES)
    if len(weights.shape) != 2:
        raise ValueError(
            "Invalid value for argument `block_size`. Received: "
            f"block_size={tuple(block_size)} for a weight of shape {tuple(weights.shape)}. "
            "Block sparsity needs 2-D weights (Dense kernels)."
        )
    height, width = (int(d) for d in weights.shape)
    block_height, block_width = block_size
    pooled = _pool_axis(ops.abs(weights), 0, block_height, pooling_type)
    pooled = _pool_axis(pooled, 1, block_width, pooling_type)
    if in_step:
        mask = magnitude_mask_tensor(pooled, sparsity)[0]
    else:
        mask = magnitude_mask(pooled, sparsity)
    mask = ops.repeat(ops.repeat(mask, block_height, axis=0), block_width, axis=1)
    return ops.cast(mask[:height, :width], weights.dtype)


def check_m_by_n(weights_shape, m_by_n, name="sparsity_m_by_n"):
    """Raises unless a weight of `weights_shape` can take `m_by_n`."""
    zeros, group = m_by_n
    if not 0 < zeros < group:
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}={tuple(m_by_n)}. "
            "Expected (m, n) with 0 < m < n: m zeros in every n weights."
        )
    if len(weights_shape) not in (2, 4):
        raise ValueError(
            f"`{name}={tuple(m_by_n)}` needs a Dense (2-D) or Conv2D (4-D) kernel; "
            f"this weight has shape {tuple(weights_shape)}."
        )


def m_by_n_mask(weights, m_by_n=(2, 4)):
    """Zeroes the `m` smallest of every `n` consecutive input-channel weights.

    For each output channel (and kernel position), the input-channel
    weights are taken in runs of `n`; a last, shorter run is padded with
    zeros, which count as its smallest.

    Args:
        weights: Tensor, variable value or NumPy array: a Dense kernel
            `(in, out)` or a Conv2D kernel `(h, w, in, out)`.
        m_by_n: Pair of integers `(m, n)` with `0 < m < n`: `m` zeros in
            every `n` weights. Defaults to `(2, 4)`, which sparse tensor
            cores accelerate.

    Returns:
        A 0/1 backend tensor of `weights`' shape and dtype.

    Raises:
        ValueError: for an `(m, n)` without `0 < m < n`, or weights that
            are neither 2-D nor 4-D.

    Example:

    ```python
    kernel = np.array([[0.1, -2.0], [0.5, 0.05], [-0.3, 0.2], [0.9, -0.01]], "float32")
    keras_fastrain.pruning.m_by_n_mask(kernel, (2, 4))  # [[0, 1], [1, 0], [0, 1], [1, 0]]
    ```
    """
    check_m_by_n(weights.shape, m_by_n)
    zeros, group = m_by_n
    shape = tuple(int(d) for d in weights.shape)
    # Rows: output channels (times kernel positions); columns: input channels.
    if len(shape) == 2:
        rows = ops.transpose(weights)
    else:
        rows = ops.reshape(ops.transpose(weights, (3, 0, 1, 2)), (-1, shape[2]))
    columns = int(rows.shape[1])
    padding = -columns % group
    magnitudes = ops.pad(ops.abs(rows), [(0, 0), (0, padding)])
    groups = ops.reshape(magnitudes, (-1, group))
    # Rank of each weight in its group, largest first; keep the top n - m.
    order = ops.argsort(-groups, axis=-1)
    ranks = ops.argsort(order, axis=-1)
    mask = ops.reshape(ops.cast(ranks < group - zeros, weights.dtype), magnitudes.shape)
    mask = mask[:, :columns]
    if len(shape) == 2:
        return ops.transpose(mask)
    return ops.transpose(ops.reshape(mask, (shape[3], shape[0], shape[1], shape[2])), (1, 2, 3, 0))
