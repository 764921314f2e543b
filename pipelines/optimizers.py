"""Optimizer and learning-rate schedule from a :class:`~pipelines.config.TrainConfig`.

Schedules over ``total_steps`` optimizer steps, peak rate η = ``learning_rate``:

* ``constant``: η.
* ``cosine``: linear warm-up 0 → η over ``warmup_epochs`` epochs, then
  η_t = η · ½(1 + cos(π t / T)) down to 0 over the remaining T steps (Keras ``CosineDecay``).
* ``onecycle`` (Smith & Topin 2018): η/25 → η linearly over the first 30 % of the steps, then
  cosine annealing η → η/1e4.
"""

from __future__ import annotations

import math

import keras

__all__ = ["OneCycle", "build_schedule", "build_optimizer"]


@keras.saving.register_keras_serializable(package="deepline")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle schedule: warm-up fraction ``pct_start`` then cosine annealing.

    lr(t) = lo + (η − lo)·t/W  for t < W = pct_start·T, lo = η/div_factor;
    lr(t) = end + (η − end)·½(1 + cos(π (t − W)/(T − W)))  after, end = η/final_div_factor.
    """

    def __init__(self, max_learning_rate: float, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, received total_steps={total_steps!r}")
        if not 0.0 < pct_start < 1.0:
            raise ValueError(f"pct_start must be in (0, 1), received pct_start={pct_start!r}")
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)

    def __call__(self, step):
        ops = keras.ops
        t = ops.cast(step, "float32")
        peak = self.max_learning_rate
        lo = peak / self.div_factor
        end = peak / self.final_div_factor
        warm = max(1.0, self.pct_start * self.total_steps)
        rest = max(1.0, self.total_steps - warm)
        up = lo + (peak - lo) * t / warm
        frac = ops.clip((t - warm) / rest, 0.0, 1.0)
        down = end + (peak - end) * 0.5 * (1.0 + ops.cos(math.pi * frac))
        return ops.where(t < warm, up, down)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


def build_schedule(config, total_steps: int, steps_per_epoch: int):
    """The learning rate (float or schedule) for ``config.lr_schedule``."""
    lr = float(config.learning_rate)
    total_steps = max(1, int(total_steps))
    if config.lr_schedule == "constant":
        return lr
    if config.lr_schedule == "onecycle":
        return OneCycle(lr, total_steps)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total_steps - 1)
    if warmup > 0:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=max(1, total_steps - warmup), alpha=0.0,
            warmup_target=lr, warmup_steps=warmup,
        )
    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total_steps, alpha=0.0)


def build_optimizer(config, total_steps: int, steps_per_epoch: int, *, mixed_precision: bool):
    """Keras optimizer named by ``config.optimizer`` (LossScaleOptimizer-wrapped if mixed)."""
    lr = build_schedule(config, total_steps, steps_per_epoch)
    wd = float(config.weight_decay) or None
    name = config.optimizer
    if name == "adam":
        opt = keras.optimizers.Adam(lr, weight_decay=wd)
    elif name == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=wd if wd is not None else 0.004)
    elif name == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=wd)
    elif name == "rmsprop":
        opt = keras.optimizers.RMSprop(lr, weight_decay=wd)
    else:
        raise ValueError(f"optimizer must be adam, adamw, sgd or rmsprop, received {name!r}")
    if mixed_precision:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt
