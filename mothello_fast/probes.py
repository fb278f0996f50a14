"""Board-state probes: 64 squares x 3 classes read from a model's hidden states.

Two estimators in scikit-learn style, `LinearProbe` and `MLPProbe` (one hidden
ReLU layer, 512 units by default). Both train every square at once with Adam
(lr 1e-3, batch 1024, 16 epochs: the mOthello protocol) on the GPU when there is
one; their last layer goes through `mothello_fast.kernels.probe.probe_loss`. Inputs
are standardised with the training set's mean and deviation, the last layer's bias
starts at each square's class log-frequencies, and Adam carries a light L2 penalty
(``weight_decay=1e-4``: torch's coupled weight decay, which adds ``1e-4 * w`` to the
gradient of the mean cross-entropy over positions and squares of every parameter,
biases included; a linear probe's full-batch fixed point is, square by square, that of
scikit-learn's logistic regression on the standardised inputs with the bias penalised
as the weight of a constant feature and ``C = 1 / (64 * weight_decay * n_positions)``:
no fixed ``C``).
Labels are classes 0..2 per square, absolute (empty / black / white) or relative
(empty / mine / theirs), as the engine's `Replay` gives them.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 3, size=(1000, 64))
>>> X = np.eye(3)[y].reshape(1000, -1) + 0.1 * rng.standard_normal((1000, 192))
>>> LinearProbe(lr=1e-2, batch_size=128, epochs=10, seed=0).fit(X, y).score(X, y) > 0.99
True
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from .progress import progress_bar

from .storage import as_path, atomic_write_bytes
from .devices import check_fits_in_memory, resolve_device
from .errors import ProbeError, check_float, check_int, number_array
from .kernels.probe import probe_loss

__all__ = ["N_SQUARES", "N_CLASSES", "PROBE_KINDS", "LinearProbe", "MLPProbe", "make_probe",
           "fresh_probe", "probe_name", "load_probe", "ProbeResult", "probe_activations",
           "check_out_dir",
           "probe_model"]

N_SQUARES = 64
N_CLASSES = 3
_PREDICT_CHUNK = 65536  # rows per forward pass at predict time
_FORMAT = "mothello-probe/1"


def _features(X, device) -> tuple[torch.Tensor, bool]:
    """X: float ``[N, d]`` (numpy or torch), finite -> (float32 tensor on `device`, whether
    it is a copy of X's memory, so that `fit` may overwrite it)."""
    if not isinstance(X, torch.Tensor):
        X = number_array("X", X, dtype=None, error=ProbeError)
    if isinstance(X, np.ndarray) and any(stride < 0 for stride in X.strides):
        X = np.ascontiguousarray(X)   # a reversed view: torch takes no negative strides
    source = torch.as_tensor(X).detach()   # hidden states may come from a graph: train on values
    if source.is_inference():   # made under torch.inference_mode(): autograd may not save it
        source = source.clone()
    if source.ndim != 2:
        raise ProbeError(f"X has shape {tuple(source.shape)}: expected [n_positions, d_model]")
    if not (source.is_floating_point() or source.dtype in (torch.int8, torch.int16, torch.int32,
                                                           torch.int64, torch.uint8)):
        raise ProbeError(f"X has dtype {source.dtype}: expected a float array")
    x = source.to(device=device, dtype=torch.float32)
    # a column's sum is finite only if all its entries are (NaN and inf propagate; finite
    # values whose sum overflows only send it on to the exact scan): a tenth of the time
    if not bool(torch.isfinite(x.sum(0)).all()):
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ProbeError(f"X has a non-finite value {float(x[row, col])} at row {row}, "
                             f"column {col} (as float32): expected finite hidden states")
    return x, x.data_ptr() != source.data_ptr()


def _labels(y, n: int, device) -> torch.Tensor:
    """y: int ``[N, 64]`` with classes 0..2 -> int64 tensor on `device`."""
    if not isinstance(y, torch.Tensor):
        y = np.ascontiguousarray(number_array("y", y, dtype=None, error=ProbeError))
        if y.dtype == np.uint64:
            y = y.astype(np.int64)   # torch has no uint64; classes 0..2 are checked below
    y = torch.as_tensor(y)
    if y.ndim != 2 or y.shape[1] != N_SQUARES:
        raise ProbeError(f"y has shape {tuple(y.shape)}: expected [n_positions, 64]")
    if y.shape[0] != n:
        raise ProbeError(f"y has {y.shape[0]} rows but X has {n}: expected one label row "
                         "per position")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ProbeError(f"y has dtype {y.dtype}: expected integer classes 0..2")
    y = y.to(device=device, dtype=torch.int64)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= N_CLASSES):
        raise ProbeError(f"y holds classes {int(y.min())}..{int(y.max())}: expected 0..2")
    return y


def _uniform(shape, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), seeded."""
    bound = 1.0 / max(fan_in, 1) ** 0.5
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class _BoardProbe:
    """Shared training and inference for the board probes; subclasses define the layers."""

    _kind = ""

    def __init__(self, *, lr: float = 1e-3, batch_size: int = 1024, epochs: int = 16,
                 weight_decay: float = 1e-4, standardize: bool = True, seed: int = 0,
                 device: str | None = None, progress: bool = False):
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.standardize = standardize
        self.seed = seed
        self.device = device
        self.progress = progress

    # -- parameters --------------------------------------------------------------------
    def _param_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _init_params(self, d: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _last_layer_input(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Hidden representation fed to the last (probe) layer: ``[N, d_last]``."""
        raise NotImplementedError

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters (scikit-learn's contract)."""
        names = ("lr", "batch_size", "epochs", "weight_decay", "standardize", "seed", "device",
                 "progress") + self._extra_params()
        return {name: getattr(self, name) for name in names}

    def _extra_params(self) -> tuple[str, ...]:
        return ()

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self.get_params():
                raise ProbeError(f"{name!r} is not a parameter of {type(self).__name__}; "
                                 f"expected one of {sorted(self.get_params())}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitting -----------------------------------------------------------------------
    def _check_hyperparameters(self) -> None:
        for name in ("batch_size", "epochs"):
            check_int(name, getattr(self, name), least=1, error=ProbeError)
        check_float("lr", self.lr, low=0, low_open=True, error=ProbeError)
        check_float("weight_decay", self.weight_decay, low=0, error=ProbeError)
        check_int("seed", self.seed, least=0, most=2**64 - 1, error=ProbeError)  # torch's range
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ProbeError(f"standardize={self.standardize!r}: expected True or False")
        resolve_device(self.device)   # names an unknown device now, not after collecting

    def fit(self, X, y):
        """Train on X: float ``[N, d]`` (hidden states) and y: int ``[N, 64]`` (classes 0..2).

        Returns self, with fitted ``params_`` (name -> float32 tensor on CPU), ``mean_`` and
        ``scale_`` (``[d]``, the input standardisation), ``n_features_in_`` and
        ``loss_curve_`` (mean training loss of each epoch). X is left as it is; standardising
        takes one float32 copy of it when it is already float32 on the probe's device.
        Works under ``torch.no_grad()`` and ``torch.inference_mode()`` too (TransformerLens
        notebooks start with ``torch.set_grad_enabled(False)``): the fit turns gradients on
        for itself.
        """
        with torch.inference_mode(False), torch.enable_grad():
            return self._fit(X, y)

    def _fit(self, X, y):
        self._check_hyperparameters()
        device = resolve_device(self.device)
        x, copied = _features(X, device)
        labels = _labels(y, x.shape[0], device)
        if x.shape[0] == 0:
            raise ProbeError("X has no rows: expected at least one position to fit on")
        n, d = x.shape
        if self.standardize:
            mean, std = x.mean(0), x.std(0, unbiased=False)
            scale = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant features: 1
            # once per fit, not once a batch (the same float32 values): in place when x is
            # already a copy (another dtype or device), else at the cost of one copy of X
            x = x.sub_(mean).div_(scale) if copied else (x - mean) / scale
        else:
            mean, scale = torch.zeros(d, device=device), torch.ones(d, device=device)
        generator = torch.Generator().manual_seed(int(self.seed))
        width = getattr(self, "hidden", 0)
        check_fits_in_memory(f"a {type(self).__name__} of {d} features", 4 * 4 * (
            d * width + (width or d) * N_SQUARES * N_CLASSES), device, error=ProbeError)
        params = self._init_params(d, generator)
        # start the last layer at each square's class log-frequencies: Adam moves a bias by
        # about lr a step, too slowly to reach a rare class's prior (corner squares) otherwise
        counts = torch.stack([(labels == c).sum(0) for c in range(N_CLASSES)], -1).float().cpu()
        params["bias"] = torch.log((counts + 1) / (counts.sum(-1, keepdim=True) + N_CLASSES))
        params = {k: v.to(device).requires_grad_(True) for k, v in params.items()}
        # foreach: the per-tensor loop's arithmetic, bit for bit, in fewer dispatches on CPU
        optimizer = torch.optim.Adam(params.values(), lr=self.lr,
                                     weight_decay=self.weight_decay, foreach=True)
        curve = []
        bar = progress_bar(self.progress, range(self.epochs), desc=f"{self._kind} probe",
                           leave=False)
        for _ in bar:
            order = torch.randperm(n, generator=generator).to(device)
            total = torch.zeros((), device=device)
            for start in range(0, n, self.batch_size):
                rows = order[start:start + self.batch_size]
                xb, yb = x.index_select(0, rows), labels.index_select(0, rows)  # (B, d), (B, 64)
                loss, _ = probe_loss(self._last_layer_input(params, xb), params["weight"],
                                     params["bias"], yb, validate=False)  # _labels checked y
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(rows)
            curve.append(float(total) / n)   # the epoch's one host sync
            bar.set_postfix(loss=f"{curve[-1]:.4f}")
        self.params_ = {k: v.detach().cpu() for k, v in params.items()}
        self.mean_, self.scale_ = mean.cpu(), scale.cpu()
        self.n_features_in_ = d
        self.loss_curve_ = curve
        return self

    # -- inference ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise ProbeError(f"this {type(self).__name__} is not fitted yet: call fit(X, y) "
                             "or load a saved probe first")

    @torch.no_grad()
    def _logits(self, X) -> torch.Tensor:
        """Logits ``float32 [N, 64, 3]`` on CPU."""
        self._check_fitted()
        device = resolve_device(self.device)
        x, _ = _features(X, "cpu")
        if x.shape[1] != self.n_features_in_:
            raise ProbeError(f"X has {x.shape[1]} features: expected {self.n_features_in_}, "
                             "as in fit")
        params = {k: v.to(device) for k, v in self.params_.items()}
        mean, scale = self.mean_.to(device), self.scale_.to(device)
        out = []
        for start in range(0, x.shape[0], _PREDICT_CHUNK):
            xb = (x[start:start + _PREDICT_CHUNK].to(device) - mean) / scale
            h = self._last_layer_input(params, xb)
            out.append((torch.einsum("nd,dsc->nsc", h, params["weight"]) + params["bias"]).cpu())
        return torch.cat(out) if out else torch.empty(0, N_SQUARES, N_CLASSES)

    def predict_proba(self, X) -> np.ndarray:
        """X: float ``[N, d]`` -> class probabilities ``float32 [N, 64, 3]``."""
        return torch.softmax(self._logits(X), -1).numpy()

    def predict(self, X) -> np.ndarray:
        """X: float ``[N, d]`` -> predicted classes ``int8 [N, 64]``."""
        return self._logits(X).argmax(-1).to(torch.int8).numpy()

    def per_square_accuracy(self, X, y) -> np.ndarray:
        """Accuracy of each square, ``float64 [64]``, on X: float ``[N, d]``, y: int ``[N, 64]``."""
        pred = torch.from_numpy(self.predict(X)).long()
        labels = _labels(y, pred.shape[0], "cpu")
        if labels.shape[0] == 0:
            raise ProbeError("X has no rows: expected at least one position to score")
        return (pred == labels).double().mean(0).numpy()

    def score(self, X, y) -> float:
        """Mean accuracy over positions and squares."""
        return float(self.per_square_accuracy(X, y).mean())

    # -- persistence ---------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the fitted probe to `path` (one safetensors file; its metadata holds the
        constructor parameters as JSON). Atomic: `path` is the old file or the new one."""
        from safetensors.torch import save

        self._check_fitted()
        tensors = {f"param.{k}": v.contiguous() for k, v in self.params_.items()}
        tensors["mean"], tensors["scale"] = self.mean_.contiguous(), self.scale_.contiguous()
        meta = {"format": _FORMAT, "class": type(self).__name__,
                "params": json.dumps({k: v.item() if isinstance(v, np.generic) else v
                                      for k, v in self.get_params().items()
                                      if k not in ("device", "progress")}),  # numpy: as Python
                "loss_curve": json.dumps(self.loss_curve_)}
        path = as_path(path, "path", error=ProbeError)
        atomic_write_bytes(path, save(tensors, metadata=meta))
        return path

    @classmethod
    def load(cls, path, *, device: str | None = None):
        """Read a probe written by `save`; raises `ProbeError` if it is another kind."""
        probe = load_probe(path, device=device)
        if not isinstance(probe, cls):
            raise ProbeError(f"{str(path)!r} holds a {type(probe).__name__}: expected a "
                             f"{cls.__name__}")
        return probe


class LinearProbe(_BoardProbe):
    """Linear board probe: logits = x W + b, W ``[d, 64, 3]``, b ``[64, 3]``.

    Fitted attributes: ``params_`` ({"weight", "bias"}), ``mean_``, ``scale_``,
    ``n_features_in_``, ``loss_curve_``; ``coef_`` and ``intercept_`` view the weight
    and bias in the standardised input space.
    """

    _kind = "linear"

    def _init_params(self, d, generator):
        return {"weight": _uniform((d, N_SQUARES, N_CLASSES), d, generator),
                "bias": _uniform((N_SQUARES, N_CLASSES), d, generator)}

    def _last_layer_input(self, params, x):
        return x

    @property
    def coef_(self) -> np.ndarray:
        """``float32 [d, 64, 3]``."""
        self._check_fitted()
        return self.params_["weight"].numpy()

    @property
    def intercept_(self) -> np.ndarray:
        """``float32 [64, 3]``."""
        self._check_fitted()
        return self.params_["bias"].numpy()


class MLPProbe(_BoardProbe):
    """Two-layer board probe: logits = relu(x W1 + b1) W + b, hidden `hidden` units (512).

    Fitted attributes as `LinearProbe`; ``params_`` holds "hidden_weight" ``[d, hidden]``,
    "hidden_bias" ``[hidden]``, "weight" ``[hidden, 64, 3]``, "bias" ``[64, 3]``.
    """

    _kind = "mlp"

    def __init__(self, *, hidden: int = 512, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden

    def _extra_params(self):
        return ("hidden",)

    def _check_hyperparameters(self):
        super()._check_hyperparameters()
        check_int("hidden", self.hidden, least=1, error=ProbeError)

    def _init_params(self, d, generator):
        h = int(self.hidden)
        return {"hidden_weight": _uniform((d, h), d, generator),
                "hidden_bias": _uniform((h,), d, generator),
                "weight": _uniform((h, N_SQUARES, N_CLASSES), h, generator),
                "bias": _uniform((N_SQUARES, N_CLASSES), h, generator)}

    def _last_layer_input(self, params, x):
        return torch.relu(x @ params["hidden_weight"] + params["hidden_bias"])  # (N, hidden)


_PROBE_CLASSES = {"LinearProbe": LinearProbe, "MLPProbe": MLPProbe}
PROBE_KINDS = {"linear": LinearProbe, "mlp": MLPProbe}


def make_probe(kind: str = "mlp", **params) -> LinearProbe | MLPProbe:
    """A fresh probe of `kind` ("linear" or "mlp") with constructor `params`, whose
    hyperparameters are checked at once (`ProbeError` for a bad kind, name or value)."""
    if kind not in PROBE_KINDS:
        raise ProbeError(f"probe={kind!r}: expected one of {sorted(PROBE_KINDS)}")
    cls = PROBE_KINDS[kind]
    try:
        probe = cls(**params)
    except TypeError:
        unknown = sorted(set(params) - set(cls().get_params()))
        raise ProbeError(f"probe parameter(s) {unknown} are not parameters of {cls.__name__}; "
                         f"expected some of {sorted(cls().get_params())}") from None
    probe._check_hyperparameters()
    return probe


def check_test_fraction(test_fraction) -> float:
    """`test_fraction` if it is a number strictly between 0 and 1, else a `ProbeError`."""
    return check_float("test_fraction", test_fraction, low=0, high=1, low_open=True,
                       high_open=True, error=ProbeError)


def split_positions(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of `n` positions: sorted ``int64`` index arrays (train, test),
    ``round(test_fraction * n)`` test positions; `ProbeError` if either part is empty."""
    from .datasets import split_games

    train, test = split_games(n, val_fraction=check_test_fraction(test_fraction), seed=seed)
    if len(train) == 0 or len(test) == 0:
        raise ProbeError(f"{n} positions with test_fraction={test_fraction}: expected both "
                         "a training and a test part")
    return train, test


def load_probe(path, *, device: str | None = None) -> LinearProbe | MLPProbe:
    """Read a probe written by ``probe.save(path)``, whichever its class."""
    from safetensors import SafetensorError, safe_open

    path = as_path(path, "path", error=ProbeError)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise ProbeError(f"{str(path)!r} is not a readable probe file: {exc}") from None
    cls = _PROBE_CLASSES.get(meta.get("class", ""))
    if meta.get("format") != _FORMAT or cls is None:
        raise ProbeError(f"{str(path)!r} has format {meta.get('format')!r} and class "
                         f"{meta.get('class')!r}: expected {_FORMAT!r} and one of "
                         f"{sorted(_PROBE_CLASSES)}")
    try:
        params = json.loads(meta["params"])
        probe = cls(**params, device=device)
        probe._check_hyperparameters()
        probe.params_ = {k[len("param."):]: v for k, v in tensors.items()
                         if k.startswith("param.")}
        probe.mean_, probe.scale_ = tensors["mean"], tensors["scale"]
        probe.n_features_in_ = int(probe.mean_.shape[0])
        probe.loss_curve_ = json.loads(meta.get("loss_curve", "[]"))
        names = {"weight", "bias"} | ({"hidden_weight", "hidden_bias"}
                                      if cls is MLPProbe else set())
        if not names <= set(probe.params_) or probe.scale_.shape != probe.mean_.shape:
            raise KeyError(f"parameters {sorted(probe.params_)}")
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ProbeError(f"{str(path)!r} is not a complete {cls.__name__} file "
                         f"({type(exc).__name__}: {exc})") from None
    return probe


def fresh_probe(probe="mlp", *, seed: int = 0):
    """An unfitted probe to fit: for a kind name ("mlp" or "linear"), a new probe of that
    kind seeded with `seed`; for an estimator (`MLPProbe(hidden=512)`, or any object with
    scikit-learn's ``get_params`` / ``fit`` / ``predict`` over ``y`` ``[N, 64]``), an
    unfitted copy (``sklearn.base.clone``) with its own parameters, seed included. Its
    hyperparameters are checked at once (`ProbeError`)."""
    from sklearn.base import clone

    if isinstance(probe, str):
        return make_probe(probe, seed=seed)
    if isinstance(probe, type) or not all(callable(getattr(probe, m, None))
                                          for m in ("get_params", "fit", "predict")):
        raise ProbeError(f"probe={probe!r}: expected 'mlp', 'linear' or an estimator with "
                         "get_params, fit and predict (such as MLPProbe(hidden=512))")
    copy = clone(probe)
    if isinstance(copy, _BoardProbe):
        copy._check_hyperparameters()
    return copy


def probe_name(probe) -> str:
    """How results name a probe: its kind name, or the estimator's repr."""
    return probe if isinstance(probe, str) else repr(probe)


@dataclass(frozen=True)
class ProbeResult:
    """Board probes of one language at several layers, entry i of each field for
    ``layers[i]``: accuracy ``float64 [n_layers]`` and per_square ``float64 [n_layers, 64]``
    on the test positions; n_train / n_test positions; probes: the fitted estimators."""
    language: str
    probe: str
    labels: str
    layers: tuple
    hooks: tuple[str, ...]
    accuracy: np.ndarray
    per_square: np.ndarray
    n_train: int
    n_test: int
    probes: tuple = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"language": self.language, "probe": self.probe, "labels": self.labels,
                "layers": list(self.layers), "hooks": list(self.hooks),
                "accuracy": self.accuracy.tolist(), "per_square": self.per_square.tolist(),
                "n_train": self.n_train, "n_test": self.n_test}


def check_out_dir(out_dir) -> Path:
    """`out_dir` as a `Path`, unless it is a file (`ProbeError`): where probes and
    probes.json go, checked before anything is collected or trained."""
    out_dir = as_path(out_dir, "out_dir", error=ProbeError)
    if out_dir.exists() and not out_dir.is_dir():
        raise ProbeError(f"out_dir={str(out_dir)!r} is a file: expected a directory for the "
                         "probes and probes.json")
    return out_dir


def probe_activations(collection, *, language: str | None = None, layers=None, probe="mlp",
                      labels: str = "absolute", test_fraction: float = 0.2, seed: int = 0,
                      out_dir=None, progress: bool = False) -> ProbeResult:
    """A board probe at each of `layers` (default: every layer collected) of `collection`
    (an `activations.ParallelActivations`, from any model) in `language` (needed when it
    holds several), trained and tested on a seeded random split of its positions
    (`test_fraction` held out). probe: a kind name or an estimator, see `fresh_probe`;
    labels: "absolute" or "relative". With `out_dir`, writes each of our probes
    (``probe-<hook name>.safetensors``) and the result (``probes.json``) there."""
    from .activations import check_collection, check_label_kind
    from .storage import atomic_write_json

    check_collection(collection)
    fresh_probe(probe, seed=seed)
    check_label_kind(labels)
    check_test_fraction(test_fraction)
    if language is None:
        if len(collection.languages) != 1:
            raise ProbeError(f"language is None but the activations hold "
                             f"{list(collection.languages)}: expected one of them")
        language = collection.languages[0]
    collection = collection.select(layers, [language])
    if out_dir is not None:   # a path that cannot be a directory fails before any training
        out_dir = check_out_dir(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    y = collection.labels(labels)
    train, test = split_positions(len(collection), test_fraction, seed)
    fitted, per_square = [], []
    for layer in progress_bar(progress, collection.layers, desc="probes", leave=False):
        X = collection.hidden[layer][language]
        estimator = fresh_probe(probe, seed=seed).fit(X[train], y[train])
        per_square.append((estimator.predict(X[test]) == y[test]).mean(0))
        fitted.append(estimator)
        if out_dir is not None and isinstance(estimator, _BoardProbe):
            estimator.save(out_dir / f"probe-{collection.hooks[layer]}.safetensors")
    per_square = np.array(per_square, dtype=np.float64).reshape(-1, N_SQUARES)
    result = ProbeResult(language, probe_name(probe), labels, tuple(collection.layers),
                         tuple(collection.hooks.values()), per_square.mean(1), per_square,
                         len(train), len(test), tuple(fitted))
    if out_dir is not None:
        atomic_write_json(out_dir / "probes.json", result.to_dict())
    return result


def probe_model(model, language_set, games, *, language: str, layers=(6,), probe="mlp",
                labels: str = "absolute", test_fraction: float = 0.2, seed: int = 0,
                batch_size: int = 256, out_dir=None, progress: bool = True) -> ProbeResult:
    """`probe_activations` on `model`'s hidden states over `games` (int8 [n, 60]) written
    in `language` at `layers` (see `activations.resolve_layers`; one entry per distinct
    hook): collect, then probe. Every argument is checked before anything is collected."""
    from .activations import check_games, check_label_kind, collect_parallel, resolve_layers

    from .languages import check_language_set

    games = check_games(games)
    check_language_set(language_set)
    fresh_probe(probe, seed=seed)
    check_label_kind(labels)
    check_test_fraction(test_fraction)
    resolve_layers(model, layers)
    if out_dir is not None:
        check_out_dir(out_dir)
    collection = collect_parallel(model, language_set, games, languages=[language],
                                  layers=layers, batch_size=batch_size, progress=progress)
    return probe_activations(collection, probe=probe, labels=labels,
                             test_fraction=test_fraction, seed=seed, out_dir=out_dir,
                             progress=progress)
