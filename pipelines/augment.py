"""Training-time image augmentation as a Keras layer (inactive at inference and in exports)."""

from __future__ import annotations

import math

import keras

__all__ = ["RandomAffine"]


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
        zeros = ops.zeros_like(theta)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0.0,
            data_format="channels_last",
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation_degrees": self.rotation_degrees,
                "zoom": self.zoom, "shift": self.shift, "seed": self.seed}
