"""Norm-pooling maths shared by the L2/Lp/FeatureL2 pooling layers (private; keras.ops only).

Conventions (documented for users in layers/README.md):

* Window sums.  Σ_window v is computed as ``average_pool(v, "valid") · |window|`` on the input
  explicitly zero-padded first when ``padding="same"``: padded cells count as zeros, so an Lp
  output at a border is the true p-norm of the valid cells of its window.  (Keras/TF average
  pooling with ``"same"`` divides by the number of *valid* cells, so ``avg × window`` is not the
  window sum at borders — that is why the padding is explicit here.)
* Zero windows.  h = s^(1/p) with s = Σ|x|^p has an infinite derivative at s = 0, and the chain
  rule would give 0·∞ = NaN.  Two guards, both giving a gradient of exactly 0 at a zero window:
  - p = 2 (L2Pooling, FeatureL2Pooling, GlobalL2Pooling, LpPooling with p=2): a smooth root
    h = sqrt(s + ε) with ε = ``L2_EPSILON`` = 1e-30.  At a zero window h = 1e-15 (not exactly
    0) and ∂h/∂x = x / h = 0; elsewhere ε is below float32 rounding for any s > 1e-22, and
    |∂h/∂x_i| = |x_i| / sqrt(s + ε) ≤ 1 always.  (Chosen over a select-based guard because it
    costs one add instead of two selects: the L2 training step is ~20 % faster on CPU.)
  - other p: ``safe_root`` evaluates the root on ``where(s > 0, s, 1)`` and selects 0 where
    s = 0: the forward value is exactly 0 and the gradient there exactly 0 (an ε would show up
    as ε^(1/p), too large for big p).
* Tiling windows (p = 2, strides = pool size, every spatial length a static multiple of its
  window: each input cell lies in exactly one window).  The gradient is written by hand,
  ∂h_w/∂x_i = x_i / h_w for the window w holding x_i, as one broadcasting multiply of x (viewed
  as ``(…, n/k, k, …)``) by ∂L/∂h / h; autodiff would run the average pool's gradient and two
  more full-size products (x² → 2x·g).  The L2Pooling2D 2×2 training step takes about 15 % less
  time (interleaved A/B on 2 CPU cores: 1.20–1.24 against 1.41–1.46 of AveragePooling2D's).
* Precision.  float16/bfloat16 inputs (``mixed_float16``) are upcast to float32 for the
  power/sum/root and the result is cast back, so x² does not overflow float16 for |x| > 256.
* Large p.  For p ∉ {1, 2} each window is divided by its own maximum m = max_window |x|
  (gradient stopped) and h = m·(Σ_window (|x|/m)^p)^(1/p): exact by homogeneity
  (‖x‖_p = m‖x/m‖_p), and, the norm being 1-homogeneous, the gradient is unchanged.  The
  largest term is 1, so |x|^p neither overflows nor underflows to 0 for any p (p → ∞ gives
  max|x|).  The windows are gathered with ``keras.ops.image.extract_patches`` (an intermediate
  |window| times the input size); p = 1 and p = 2 use the fast average-pool window sums.
  The global variants do the same with the whole feature map as the window (no patches).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from layers import _conv_utils as cu

_LOW_PRECISION = ("float16", "bfloat16")
L2_EPSILON = 1e-30


def upcast(x):
    """(x in float32 if it was float16/bfloat16, original dtype)."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in _LOW_PRECISION:
        return ops.cast(x, "float32"), dtype
    return x, dtype


def abs_power(x, p: float):
    """|x|^p elementwise (x² for p = 2, |x| for p = 1)."""
    if p == 2:
        return ops.square(x)
    if p == 1:
        return ops.abs(x)
    return ops.power(ops.abs(x), p)


def safe_root(s, p: float):
    """s^(1/p) for s ≥ 0 with a finite gradient (exactly 0 from a zero window) everywhere.

    p = 1: s itself; p = 2: sqrt(s + L2_EPSILON); other p: exactly 0 where s = 0 (double where).
    """
    if p == 1:
        return s
    if p == 2:
        return ops.sqrt(s + ops.cast(L2_EPSILON, s.dtype))
    positive = ops.greater(s, 0)
    safe = ops.where(positive, s, ops.ones_like(s))
    root = ops.power(safe, 1.0 / p)
    return ops.where(positive, root, ops.zeros_like(root))


def scale_for(x, p: float, axes):
    """Per-example/channel scale c = max|x| over ``axes`` (gradient stopped, 1 where 0), or
    None when p ∈ {1, 2} needs no rescaling."""
    if p in (1, 2):
        return None
    c = ops.stop_gradient(ops.max(ops.abs(x), axis=axes, keepdims=True))
    return ops.where(ops.greater(c, 0), c, ops.ones_like(c))


def pad_same(x, axes, pool_size, strides):
    """Zero-pad each axis in ``axes`` the way ``padding="same"`` does (⌊P/2⌋ before, rest after).

    Works for static and dynamic (None) axis lengths.
    """
    rank = len(x.shape)
    pads = [[0, 0] for _ in range(rank)]
    dynamic_shape = None
    for axis, k, s in zip(axes, pool_size, strides, strict=True):
        n = x.shape[axis]
        if n is not None:
            before, after = cu.same_padding_amounts(int(n), k, s)
        else:
            if dynamic_shape is None:
                dynamic_shape = ops.shape(x)
            n = dynamic_shape[axis]
            out = (n + s - 1) // s
            total = ops.maximum((out - 1) * s + k - n, 0)
            before = total // 2
            after = total - before
        pads[axis] = [before, after]
    if all(isinstance(v, int) and v == 0 for pair in pads for v in pair):
        return x
    return ops.pad(x, pads)


def window_sum(v, pool_size, strides, padding, data_format):
    """Σ over each pooling window of v (zero padding for ``"same"``)."""
    rank = len(pool_size)
    if padding == "same":
        v = pad_same(v, cu.spatial_axes(rank, data_format), pool_size, strides)
    mean = ops.average_pool(v, pool_size, strides, "valid", data_format)
    return mean * ops.cast(math.prod(pool_size), mean.dtype)


def lp_window_norm(x, p, pool_size, strides, padding, data_format):
    """h = (Σ_window |x|^p)^(1/p) over sliding windows (see the module conventions)."""
    x, dtype = upcast(x)
    tiles = _tiled_shapes(x, pool_size, strides, data_format) if p == 2 else None
    if tiles is not None:
        h = _l2_tiled_norm(x, pool_size, data_format, *tiles)
    elif p in (1, 2):
        h = safe_root(window_sum(abs_power(x, p), pool_size, strides, padding, data_format), p)
    else:
        h = _lp_window_norm_rescaled(x, p, pool_size, strides, padding, data_format)
    return ops.cast(h, dtype)


def _tiled_shapes(x, pool_size, strides, data_format):
    """(x viewed as ``(batch, …, n/k, k, …, C)``, the pooled output as ``(batch, …, n/k, 1, …,
    C)``) when the windows tile ``x`` exactly (strides = pool size, every non-batch axis static,
    each spatial length a multiple of its window; "same" then pads nothing), else None."""
    if tuple(strides) != tuple(pool_size) or any(d is None for d in x.shape[1:]):
        return None
    windows = dict(zip(cu.spatial_axes(len(pool_size), data_format), pool_size, strict=True))
    tiled, pooled = [-1], [-1]
    for axis in range(1, len(x.shape)):
        n, k = x.shape[axis], windows.get(axis)
        if k is None:
            tiled.append(n)
            pooled.append(n)
        elif n % k:
            return None
        else:
            tiled += [n // k, k]
            pooled += [n // k, 1]
    return tuple(tiled), tuple(pooled)


def _l2_tiled_norm(x, pool_size, data_format, tiled, pooled):
    """sqrt(Σ_window x² + ε) for tiling windows, with the hand-written gradient (module doc)."""

    @ops.custom_gradient
    def norm(x):
        h = safe_root(window_sum(ops.square(x), pool_size, pool_size, "valid", data_format), 2)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            scale = ops.reshape(upstream / h, pooled)  # ∂L/∂h_w / h_w, broadcast over window w
            return ops.reshape(ops.reshape(x, tiled) * scale, ops.shape(x))

        return h, grad

    return norm(x)


def _lp_window_norm_rescaled(x, p, pool_size, strides, padding, data_format):
    """Lp over windows with each window rescaled by its own max |x| (any p ≥ 1, no overflow)."""
    rank = len(pool_size)
    if data_format == "channels_first":
        x = ops.moveaxis(x, 1, -1)
    if rank == 1:  # a 1D window is a (1, k) window of a one-row image
        x = ops.expand_dims(x, 1)
        pool_size, strides = (1, *pool_size), (1, *strides)
    channels = x.shape[-1]
    patches = ops.image.extract_patches(x, pool_size, strides=strides, padding=padding,
                                        data_format="channels_last")
    # (batch, rows', cols', k1·k2·C) → (batch, rows', cols', k1·k2, C); "same" pads with zeros.
    patches = ops.reshape(patches, (*ops.shape(patches)[:-1], math.prod(pool_size), channels))
    magnitude = ops.abs(patches)
    m = ops.stop_gradient(ops.max(magnitude, axis=-2))
    positive = ops.greater(m, 0)
    m_safe = ops.where(positive, m, ops.ones_like(m))
    s = ops.sum(ops.power(magnitude / ops.expand_dims(m_safe, -2), p), axis=-2)  # ≥ 1 if m > 0
    s_safe = ops.where(positive, s, ops.ones_like(s))
    h = m * ops.power(s_safe, 1.0 / p)  # m = 0 → exactly 0, gradient 0
    if rank == 1:
        h = ops.squeeze(h, 1)
    if data_format == "channels_first":
        h = ops.moveaxis(h, -1, 1)
    return h


def lp_global_norm(x, p, axes, keepdims):
    """h = (Σ_{all positions} |x|^p)^(1/p) over ``axes``."""
    x, dtype = upcast(x)
    scale = scale_for(x, p, axes)
    if scale is not None:
        x = x / scale
    h = safe_root(ops.sum(abs_power(x, p), axis=axes, keepdims=True), p)
    if scale is not None:
        h = h * scale
    if not keepdims:
        h = ops.squeeze(h, axis=axes)
    return ops.cast(h, dtype)
