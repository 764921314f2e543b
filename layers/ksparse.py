"""k-sparse autoencoders (Makhzani & Frey, 2013, "k-Sparse Autoencoders", arXiv:1312.5663).

Three pieces:

* :class:`KSparse` — the top-k non-linearity ``supp_k``: keep the k largest activations of each
  example (last axis), zero the rest. At inference it keeps ``min(units, round(alpha·k))``.
* :class:`KSparseAutoencoder` — linear encoder, ``KSparse``, linear decoder with tied weights,
  trained on the squared reconstruction error (an ordinary Keras model: ``compile(loss="mse")``).
* :class:`KSparseSchedule` — the paper's schedule: start with a large k and lower it linearly to
  the target k over the first part of training (avoids dead hidden units).

``k`` lives in a non-trainable int32 variable, so changing it between calls (or epochs) neither
retraces a ``tf.function`` nor rebuilds the training step.
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

__all__ = ["KSparse", "KSparseAutoencoder", "KSparseSchedule"]


def _check_k(k, argument: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
        raise ValueError(f"`{argument}` must be a positive integer; received {argument}={k!r}")
    return int(k)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 1:
        raise ValueError(f"`alpha` must be a number >= 1; received alpha={alpha!r}")
    return float(alpha)


@keras.saving.register_keras_serializable(package="deepline")
class KSparse(keras.layers.Layer):
    """Top-k sparsity: keep the k largest activations of each example, zero the others.

    With ``Γ`` the indices of the k largest entries of ``z`` (last axis)::

        y_i = z_i  if i ∈ Γ   else 0                  (training)
        Γ uses k' = min(units, round(alpha · k))     (inference, training=False)

    The output is ``z ⊙ m`` with a 0/1 mask ``m`` (computed as ``where(m, z, 0)``, so dropped
    units are +0, never −0), so the gradient flows through the kept units
    only (``∂L/∂z = m ⊙ ∂L/∂y``) — the paper's "backpropagate through the k largest".

    Ties are broken deterministically: among equal values the **lower index wins** (e.g. with
    k = 2, ``[3, 5, 3, 3]`` → ``[3, 5, 0, 0]``). ``round`` rounds halves to even (NumPy's rule).
    NaN inputs are not supported.

    ``k`` is held in a non-trainable int32 variable (created at build); set it with
    ``layer.k = new_k`` at any time — e.g. from :class:`KSparseSchedule` — without retracing or
    recompiling the training step.

    Args:
        k: number of units kept per example during training, ``1 <= k <= units``.
        alpha: inference multiplier (``alpha >= 1``); at inference ``min(units, round(alpha·k))``
            units are kept, as the paper does for the encoding used by a classifier.
        **kwargs: base layer keyword arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(..., units)``, any rank ≥ 1 with a known last dimension.

    Output shape:
        Same as the input.

    Example:
        >>> layer = KSparse(k=2)
        >>> layer(np.array([[3.0, 5.0, 3.0, 3.0]]), training=True)   # [[3, 5, 0, 0]]
    """

    def __init__(self, k: int, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self._k_value = _check_k(k)
        self.alpha = _check_alpha(alpha)
        self.units: int | None = None
        self._k_variable = None
        self._all_units_at_build = False  # set by KSparseSchedule(k_start=None) before build
        self.supports_masking = True

    # -- k as mutable state -------------------------------------------------------------------
    @property
    def k(self) -> int:
        """The current training-time k (a Python int)."""
        if self._k_variable is None:
            return self._k_value
        return int(self._k_variable.numpy())

    @k.setter
    def k(self, value: int) -> None:
        value = _check_k(value)
        if self.units is not None and value > self.units:
            raise ValueError(
                f"`k` must be at most the number of units ({self.units}); received k={value!r}"
            )
        self._k_value = value
        self._all_units_at_build = False
        if self._k_variable is not None:
            self._k_variable.assign(value)

    @property
    def inference_k(self) -> int:
        """Units kept at inference: ``min(units, round(alpha · k))``."""
        kept = int(round(self.alpha * self.k))
        return kept if self.units is None else min(self.units, kept)

    # -- Keras API ----------------------------------------------------------------------------
    def build(self, input_shape):
        units = input_shape[-1]
        if units is None:
            raise ValueError(
                f"KSparse needs a known last dimension; received input_shape={input_shape!r}"
            )
        if self._all_units_at_build:
            self._k_value, self._all_units_at_build = int(units), False
        if self._k_value > units:
            raise ValueError(
                f"`k` must be at most the number of units ({units}); received k={self._k_value!r}"
            )
        self.units = int(units)
        self._k_variable = self.add_weight(
            name="k",
            shape=(),
            dtype="int32",
            initializer=keras.initializers.Constant(self._k_value),
            trainable=False,
            aggregation="only_first_replica",
        )

    def call(self, inputs, training=None):
        k = ops.convert_to_tensor(self._k_variable.value, dtype="int32")
        if not training:
            scaled = ops.round(ops.multiply(ops.cast(k, "float32"), self.alpha))
            k = ops.minimum(ops.cast(scaled, "int32"), self.units)
        return ops.where(top_k_mask(inputs, k), inputs, ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update({"k": self.k, "alpha": self.alpha})
        return config


def top_k_mask(z, k):
    """Boolean mask of the k largest entries of ``z`` along the last axis (lower index wins ties).

    ``top_k`` returns the indices of the k largest per row (among equal values the lower index
    is selected, sorted or not), and the mask is those indices scattered into an all-``False``
    array of ``z``'s shape. Only the set of indices matters, so on TensorFlow they are asked for
    unsorted: its kernels select the same set either way (tested), and on the CPU unsorted is
    about 25 % cheaper (128 × 1000, k = 25: 0.87 against 1.18 ms). ``k`` may be a tensor (no
    retrace when it changes). On JAX, whose ``top_k`` needs a static k, see :func:`rank_mask`.
    """
    shape = ops.shape(z)
    units = shape[-1]
    flat = ops.reshape(z, (-1, units))
    if keras.backend.backend() == "jax":
        return ops.reshape(rank_mask(flat, k), shape)
    _, indices = ops.top_k(flat, k, sorted=keras.backend.backend() != "tensorflow")
    rows = ops.broadcast_to(ops.expand_dims(ops.arange(ops.shape(flat)[0]), 1),
                            ops.shape(indices))
    pairs = ops.reshape(ops.stack([rows, ops.cast(indices, rows.dtype)], axis=-1), (-1, 2))
    # Scattered as int32 ones, then compared: a scatter that adds (JAX, PyTorch) takes no bool.
    hits = ops.scatter(pairs, ops.ones((ops.shape(pairs)[0],), "int32"), ops.shape(flat))
    return ops.reshape(ops.greater(hits, 0), shape)


def rank_mask(flat, k):
    """``top_k_mask`` of a ``(rows, units)`` tensor through ranks, for a k known only at run time.

    ``top_k`` with k = units orders every row (largest first, lower index first among equals);
    the inverse permutation (``argsort`` of that order) is each entry's rank, and the mask is
    rank < k. A full sort per row instead of a partial one; JAX's ``top_k`` needs a static k,
    and ``k`` lives in a variable (traced inside ``jit``).
    """
    _, order = ops.top_k(flat, flat.shape[-1], sorted=True)
    ranks = ops.argsort(order, axis=-1)
    return ops.less(ranks, ops.cast(k, ranks.dtype))


@keras.saving.register_keras_serializable(package="deepline")
class KSparseAutoencoder(keras.Model):
    """k-sparse autoencoder: linear encoder, top-k, linear decoder (tied weights by default).

    With ``x`` of shape ``(batch, input_dim)``, ``W`` of shape ``(input_dim, units)``::

        z  = x W + b                     (the paper's Wᵀx + b, row-vector convention)
        z' = supp_k(z)                   (KSparse)
        x̂  = z' Wᵀ + b'                  (tied; untied: z' W_dec + b', W_dec (units, input_dim))

    ``call`` (the reconstruction) uses the k units the model is trained with in training AND
    inference, so validation/test losses measure the trained objective. The paper's
    ``alpha·k`` rule is an *encoding* rule for features: ``encode(x, training=False)`` returns
    ``supp_{αk}(x W + b)`` (``encode(x, training=True)``: ``supp_k``).

    Train on the squared error ``‖x − x̂‖²`` as an ordinary Keras model:
    ``model.compile(optimizer, loss="mse")`` then ``model.fit(x, x)`` — or ``model.fit(x)``: when
    no target is given the input is the target. A custom (e.g. distributed) loop uses
    ``model(x, training=True)`` with any MSE loss against ``x``. ``mse`` averages over the
    ``input_dim`` pixels, i.e. ``‖x − x̂‖² / input_dim`` per example.

    Args:
        units: hidden units (1000 in the paper's MNIST experiments).
        k: units kept per example during training (:class:`KSparse`).
        alpha: encoding multiplier: ``encode(x, training=False)`` keeps
            ``min(units, round(alpha·k))`` units (the reconstruction always uses k).
        tied_weights: decoder uses ``Wᵀ`` (True, the paper) or its own ``W_dec`` (False).
        kernel_initializer, bias_initializer: for ``W`` (and ``W_dec``) and for ``b``, ``b'``.
        **kwargs: base model keyword arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(batch, input_dim)``.

    Output shape:
        ``(batch, input_dim)``: the reconstruction ``x̂``.

    Example:
        >>> ae = KSparseAutoencoder(units=1000, k=25)
        >>> ae.compile(optimizer="adam", loss="mse")
        >>> ae.fit(x, x, epochs=10, callbacks=[KSparseSchedule(k=25, k_start=100)])
        >>> codes = ae.encode(x)          # (batch, 1000), alpha·k non-zeros per row
        >>> x_hat = ae(x)                 # reconstruction from the k largest
    """

    def __init__(
        self,
        units: int = 1000,
        k: int = 25,
        alpha: float = 1.0,
        tied_weights: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units <= 0:
            raise ValueError(f"`units` must be a positive integer; received units={units!r}")
        if _check_k(k) > units:
            raise ValueError(f"`k` must be at most units={units}; received k={k!r}")
        if not isinstance(tied_weights, bool):
            raise ValueError(
                f"`tied_weights` must be True or False; received tied_weights={tied_weights!r}"
            )
        self.units = int(units)
        self.tied_weights = tied_weights
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.ksparse = KSparse(k=k, alpha=alpha, name="ksparse", dtype=self.dtype_policy)

    @property
    def k(self) -> int:
        """The training-time k of the :class:`KSparse` layer (settable)."""
        return self.ksparse.k

    @k.setter
    def k(self, value: int) -> None:
        self.ksparse.k = value

    @property
    def alpha(self) -> float:
        return self.ksparse.alpha

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"KSparseAutoencoder needs a known input dimension; received "
                f"input_shape={input_shape!r}"
            )
        input_dim = int(input_dim)
        self.kernel = self.add_weight(
            name="kernel", shape=(input_dim, self.units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer=self.bias_initializer
        )
        self.decoder_kernel = None
        if not self.tied_weights:
            self.decoder_kernel = self.add_weight(
                name="decoder_kernel",
                shape=(self.units, input_dim),
                initializer=self.kernel_initializer,
            )
        self.decoder_bias = self.add_weight(
            name="decoder_bias", shape=(input_dim,), initializer=self.bias_initializer
        )
        self.ksparse.build((None, self.units))

    def encode(self, x, training=False):
        """The sparse code ``supp_k(x W + b)``, shape ``(batch, units)``; alpha·k at inference."""
        dtype = self.compute_dtype
        x = ops.cast(x, dtype)
        z = ops.matmul(x, ops.cast(self.kernel, dtype)) + ops.cast(self.bias, dtype)
        return self.ksparse(z, training=training)

    def decode(self, code):
        """Reconstruction ``code Wᵀ + b'`` (untied: ``code W_dec + b'``), ``(batch, input_dim)``."""
        dtype = self.compute_dtype
        code = ops.cast(code, dtype)
        if self.tied_weights:
            decoder = ops.transpose(ops.cast(self.kernel, dtype))
        else:
            decoder = ops.cast(self.decoder_kernel, dtype)
        return ops.matmul(code, decoder) + ops.cast(self.decoder_bias, dtype)

    def call(self, inputs, training=None):
        # The reconstruction uses k units in both modes (KSparse's training-time rule); alpha·k
        # applies to `encode(..., training=False)` only.
        return self.decode(self.encode(inputs, training=True))

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Autoencoder default: with no target (``fit(x)``), the input is the target."""
        if y is None:
            y = x
        return super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "k": self.ksparse.k,
                "alpha": self.ksparse.alpha,
                "tied_weights": self.tied_weights,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("kernel_initializer", "bias_initializer"):
            config[key] = keras.initializers.deserialize(config[key])
        return cls(**config)


def find_ksparse_layers(model) -> list[KSparse]:
    """Every :class:`KSparse` layer inside ``model`` (searched recursively through sub-models)."""
    found, stack, seen = [], [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, KSparse):
            found.append(layer)
        stack.extend(reversed(list(getattr(layer, "layers", []) or [])))
        inner = getattr(layer, "ksparse", None)
        if isinstance(inner, KSparse):
            stack.append(inner)
    return found


@keras.saving.register_keras_serializable(package="deepline")
class KSparseSchedule(keras.callbacks.Callback):
    """The paper's k schedule: linear decrease from ``k_start`` to ``k`` over the first part of
    training, then constant.

    With ``E`` training epochs and ``D = max(1, round(fraction · E))``, at epoch ``e`` (0-based)::

        k_e = round(k_start + (k − k_start) · min(1, e / D))

    so epoch 0 trains with ``k_start`` and epochs ``D, …, E−1`` with the target ``k``.
    With ``by="step"`` the same formula runs per training step (``e`` → global step,
    ``E`` → total steps). When training ends the layers are left at the target ``k``.

    Args:
        k: target k (the sparsity of the final model).
        k_start: initial k; ``None`` → the layer's number of units (every unit active at first).
        fraction: fraction of training over which k decreases, in ``(0, 1]`` (paper: one half).
        by: ``"epoch"`` or ``"step"``.
        epochs: total epochs; ``None`` → the ``epochs`` given to ``fit``.
        layer_name: only the :class:`KSparse` layer with this name; ``None`` → every KSparse layer
            in the model (searched recursively).
        verbose: print k when it changes.

    Example:
        >>> model.fit(x, x, epochs=20, callbacks=[KSparseSchedule(k=25, k_start=100)])
    """

    def __init__(self, k: int, k_start: int | None = None, fraction: float = 0.5,
                 by: str = "epoch", epochs: int | None = None, layer_name: str | None = None,
                 verbose: int = 0):
        super().__init__()
        self.k = _check_k(k)
        if k_start is not None:
            _check_k(k_start, "k_start")
            if k_start < self.k:
                raise ValueError(
                    f"`k_start` must be >= k={self.k} (k decreases); received k_start={k_start!r}"
                )
        self.k_start = k_start
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) \
                or not 0 < fraction <= 1:
            raise ValueError(f"`fraction` must be in (0, 1]; received fraction={fraction!r}")
        self.fraction = float(fraction)
        if by not in ("epoch", "step"):
            raise ValueError(f"`by` must be 'epoch' or 'step'; received by={by!r}")
        self.by = by
        if epochs is not None:
            _check_k(epochs, "epochs")
        self.epochs = epochs
        self.layer_name = layer_name
        self.verbose = verbose
        self._layers: list[KSparse] = []
        self._steps_per_epoch: int | None = None

    def k_at(self, position: int, total: int, k_start: int | None = None) -> int:
        """k at epoch (or step) ``position`` of ``total``: the schedule formula above."""
        k_start = self.k_start if k_start is None else k_start
        if k_start is None:
            raise ValueError("`k_start` is unknown before the model is attached; pass k_start")
        decay = max(1, round(self.fraction * total))
        progress = min(1.0, position / decay)
        return int(round(k_start + (self.k - k_start) * progress))

    # -- Keras callback hooks -----------------------------------------------------------------
    def on_train_begin(self, logs=None):
        layers = find_ksparse_layers(self.model)
        if self.layer_name is not None:
            layers = [layer for layer in layers if layer.name == self.layer_name]
        if not layers:
            what = f"named {self.layer_name!r}" if self.layer_name else "at all"
            raise ValueError(f"KSparseSchedule: the model has no KSparse layer {what}")
        for layer in layers:
            limit = layer.units
            start = self._start_for(layer)
            if limit is not None and start > limit:
                raise ValueError(
                    f"`k_start` must be at most the layer's units ({limit}); received "
                    f"k_start={start!r}"
                )
            if limit is not None and self.k > limit:
                raise ValueError(f"`k` must be at most the layer's units ({limit}); "
                                 f"received k={self.k!r}")
        self._layers = layers
        self._steps_per_epoch = (self.params or {}).get("steps")

    def _start_for(self, layer: KSparse) -> int:
        if self.k_start is not None:
            return self.k_start
        return layer.units if layer.units is not None else layer.k

    def _total_epochs(self) -> int:
        total = self.epochs or (self.params or {}).get("epochs")
        if not total:
            raise ValueError("KSparseSchedule needs the number of epochs: pass epochs=")
        return int(total)

    def _apply(self, position: int, total: int) -> None:
        for layer in self._layers:
            if layer.units is None and self.k_start is None:
                # Keras builds the model inside the first traced step: "every unit" is resolved
                # when the layer learns its size; then the formula takes over.
                if position == 0:
                    layer._all_units_at_build = True
                continue
            value = self.k_at(position, total, self._start_for(layer))
            if value != layer.k:
                layer.k = value
                if self.verbose:
                    print(f"KSparseSchedule: {layer.name}.k = {value}")

    def on_epoch_begin(self, epoch, logs=None):
        if self.by == "epoch":
            self._apply(epoch, self._total_epochs())
        else:
            self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.by != "step":
            return
        steps = self._steps_per_epoch
        if not steps:
            raise ValueError("KSparseSchedule(by='step') needs a known number of steps per epoch")
        self._apply(getattr(self, "_epoch", 0) * steps + batch, self._total_epochs() * steps)

    def on_train_end(self, logs=None):
        for layer in self._layers:
            layer.k = self.k

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_config(self):
        return {
            "k": self.k, "k_start": self.k_start, "fraction": self.fraction, "by": self.by,
            "epochs": self.epochs, "layer_name": self.layer_name, "verbose": self.verbose,
        }
