"""Training-time image augmentation as a Keras layer (inactive at inference and in exports)."""

from __future__ import annotations

import math

import keras

__all__ = ["RandomAffine", "bilinear_affine"]


def bilinear_affine(images, transform):
    """Resample ``images`` (batch, H, W, C) at affine source points, bilinear, zeros outside.

    ``transform`` (batch, 6) = [a0, a1, a2, b0, b1, b2] maps output pixel (x, y) (column, row
    indices) to the input point (a0 x + a1 y + a2, b0 x + b1 y + b2) — the convention of
    ``keras.ops.image.affine_transform`` (fill_mode="constant", fill_value=0), with which it
    agrees; written with gathers only, so it also compiles under XLA (``jit_compile``).
    """
    ops = keras.ops
    h, w, c = images.shape[1], images.shape[2], images.shape[3]
    batch = ops.shape(images)[0]
    rows, cols = ops.meshgrid(ops.arange(h, dtype="float32"), ops.arange(w, dtype="float32"),
                              indexing="ij")
    xs = ops.reshape(cols, (1, h * w))
    ys = ops.reshape(rows, (1, h * w))
    t = ops.cast(transform, "float32")
    sx = t[:, 0:1] * xs + t[:, 1:2] * ys + t[:, 2:3]
    sy = t[:, 3:4] * xs + t[:, 4:5] * ys + t[:, 5:6]
    x0, y0 = ops.floor(sx), ops.floor(sy)
    fx, fy = sx - x0, sy - y0
    flat = ops.reshape(images, (batch, h * w, c))

    def corner(yc, xc, weight):
        valid = (xc >= 0) & (xc <= w - 1) & (yc >= 0) & (yc <= h - 1)
        index = ops.cast(ops.clip(yc, 0, h - 1) * w + ops.clip(xc, 0, w - 1), "int32")
        index = ops.broadcast_to(ops.expand_dims(index, -1), (batch, h * w, c))
        values = ops.take_along_axis(flat, index, axis=1)
        weight = weight * ops.cast(valid, "float32")
        return values * ops.cast(ops.expand_dims(weight, -1), values.dtype)

    out = (corner(y0, x0, (1 - fx) * (1 - fy)) + corner(y0, x0 + 1, fx * (1 - fy))
           + corner(y0 + 1, x0, (1 - fx) * fy) + corner(y0 + 1, x0 + 1, fx * fy))
    return ops.reshape(out, (batch, h, w, c))


@keras.saving.register_keras_serializable(package="deepline")
class RandomAffine(keras.layers.Layer):
    """Random rotation + zoom + shift in ONE bilinear resampling (identity when not training).

    For an output pixel p (x, y) the input is sampled at  A (p − c) + c + t  with
    A = R(θ) / s, θ ~ U(−r, r), s ~ U(1 − z, 1 + z), t ~ U(−shift·W, shift·W) × U(−shift·H, …),
    c the image centre; outside pixels read 0. Input/output: (batch, H, W, C), channels last.
    """

    def __init__(self, rotation_degrees=10.0, zoom=0.1, shift=0.1, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        for name, value in (("rotation_degrees", rotation_degrees), ("zoom", zoom),
                            ("shift", shift)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, received {value!r}")
        if zoom >= 1:
            raise ValueError(f"zoom must be < 1, received zoom={zoom!r}")
        self.rotation_degrees = float(rotation_degrees)
        self.zoom = float(zoom)
        self.shift = float(shift)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def call(self, images, training=None):
        if not training:
            return images
        ops = keras.ops
        shape = ops.shape(images)
        batch = shape[0]
        h = ops.cast(shape[1], "float32")
        w = ops.cast(shape[2], "float32")
        r = self.rotation_degrees * math.pi / 180.0

        def uniform(lo, hi):
            return keras.random.uniform((batch,), lo, hi, seed=self.seed_generator)

        theta = uniform(-r, r)
        scale = uniform(1.0 - self.zoom, 1.0 + self.zoom)
        tx = uniform(-self.shift, self.shift) * w
        ty = uniform(-self.shift, self.shift) * h
        cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
        cos, sin = ops.cos(theta) / scale, ops.sin(theta) / scale
        a0, a1, b0, b1 = cos, -sin, sin, cos
        a2 = cx - a0 * cx - a1 * cy + tx
        b2 = cy - b0 * cx - b1 * cy + ty
        transform = ops.stack([a0, a1, a2, b0, b1, b2], axis=1)
        return bilinear_affine(images, transform)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation_degrees": self.rotation_degrees,
                "zoom": self.zoom, "shift": self.shift, "seed": self.seed}
