"""Training mOthelloGPT: AdamW, warm-up + cosine schedule, compiled, bf16, resumable, DDP.

``train(config, train_games=..., val_games=..., out_dir=...)`` writes a run directory
(`runs`: config.json, metrics.jsonl, checkpoints/step-NNNNNN/). The loop reads top to
bottom, as nanoGPT's: at each step, evaluate and save as due, then train on one batch
and log its loss.

Determinism: batch ``s`` is a pure function of ``(seed, s)`` (`corpus.Corpus`) and
dropout is reseeded from ``(seed, s, rank)`` before every step, so a run resumed
from a checkpoint continues exactly as the uninterrupted run (on CPU; on CUDA up
to non-deterministic kernels).

Multi-GPU: launched by ``torchrun --nproc_per_node N``, every process builds the
same global batch of `batch_size` games and trains on its ``1/N`` slice under
DistributedDataParallel; the loss is normalised by the global number of targets,
so the update equals single-process training on the global batch.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from .checkpoint import load_checkpoint, load_weights, restore_rng_state, save_checkpoint
from .progress import progress_bar
from .storage import as_path
from .runs import RUN_CONFIG, MetricsLog, Run, check_resume, data_digests
from .errors import CheckpointError, ConfigError, check_float, check_int
from .devices import resolve_device
from .evaluate import evaluate_languages
from .model import GPT, GPTConfig
from .othello import validate_games
from .parallel import torch_threads

__all__ = ["TrainConfig", "TrainResult", "train", "train_on_dataset", "load_train_config",
           "legal_move_curves", "process_group",
           "learning_rate", "make_optimizer", "train_step"]

DEFAULT_WARMUP_STEPS = 500   # mOthello's, for 20,000 steps


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults follow mOthello (PROTOCOLS.md)."""
    # languages (see languages.LanguageSet.from_spec)
    languages: str = "atomic,atomic"
    n_anchors: int = 0
    objective: str = "standard"           # "standard" or "unified" (needs an output language)
    language_seed: int = 0                # fixed apart from `seed`: same languages across seeds
    language_weights: list[float] | None = None   # sampling weight of each language (None: equal)
    # model (vocabulary and context come from the language set)
    n_layers: int = 8
    n_heads: int = 8
    d_model: int = 512
    d_mlp: int = 2048
    dropout: float = 0.1
    attention_backend: str = "auto"
    # optimisation
    batch_size: int = 1024                # games per step, over all processes
    lr: float = 5e-4
    warmup_steps: int | None = None       # None: min(500, max_steps // 10); < max_steps
    max_steps: int = 20_000               # ~one epoch of 20M games at batch 1024
    weight_decay: float = 0.1             # on linear-layer weights only
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    min_lr_ratio: float = 0.1             # cosine decay ends at 10% of lr
    # evaluation, logging, checkpoints
    eval_every: int = 1000                # 0: only at the end
    eval_games: int = 500                 # held-out games used by each evaluation
    log_every: int = 10
    checkpoint_every: int = 1000          # 0: only at the end
    keep_checkpoints: int | None = None   # keep the newest k (None: all)
    # runtime
    seed: int = 0
    device: str = "auto"                  # "auto": cuda if available
    compile: bool | None = None           # None: on for CUDA
    compile_mode: str | None = None       # passed to torch.compile (e.g. "max-autotune")
    bf16: bool | None = None              # bf16 autocast; None: on for CUDA
    tf32: bool = True                     # TF32 matmuls on CUDA while training (then restored)
    threads: int | None = None            # torch CPU threads while training (None: torch's)
    wandb: bool = False
    wandb_project: str = "mothello"

    # fields that may change when resuming: they do not change the model or the optimiser.
    # `device` does change the batches (corpus streams differ between CPU and CUDA), as does
    # the number of processes (dropout is seeded per rank): resuming warns when either differs.
    RUNTIME_FIELDS = ("eval_every", "eval_games", "log_every", "checkpoint_every",
                      "keep_checkpoints", "device", "compile", "compile_mode", "bf16", "tf32",
                      "threads", "wandb", "wandb_project")

    def __post_init__(self):
        if self.objective not in ("standard", "unified"):
            raise ConfigError(f"objective={self.objective!r}: expected 'standard' or 'unified'")
        if not isinstance(self.languages, str) or not self.languages.strip():
            raise ConfigError(f"TrainConfig.languages={self.languages!r}: expected kinds such "
                              "as 'atomic,split:3' (see LanguageSet.from_spec)")
        for name, kinds, expected in self._CHOICES:
            value = getattr(self, name)
            if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
                raise ConfigError(f"TrainConfig.{name}={value!r}: expected {expected}")
        try:
            torch.device(self.device) if self.device != "auto" else None
        except (RuntimeError, TypeError):
            raise ConfigError(f"TrainConfig.device={self.device!r}: expected 'auto', 'cpu', "
                              "'cuda' or 'cuda:N'") from None
        from .kernels.attention import BACKENDS
        if self.attention_backend not in BACKENDS:
            raise ConfigError(f"TrainConfig.attention_backend={self.attention_backend!r}: "
                              f"expected one of {list(BACKENDS)}")
        for name, least in self._INTEGERS:
            value = getattr(self, name)
            if name in self._OPTIONAL and value is None:
                continue
            try:
                value = check_int(f"TrainConfig.{name}", value, least=least,
                                  most=2**63 - 1 if "seed" in name else None, error=ConfigError)
            except ConfigError as exc:
                if name not in self._OPTIONAL:
                    raise
                raise ConfigError(f"{exc} or None ({self._OPTIONAL[name]})") from None
            setattr(self, name, value)   # numpy integers too, as Python ints (as JSON writes them)
        if self.n_anchors > 60:
            raise ConfigError(f"TrainConfig.n_anchors={self.n_anchors!r}: expected 0..60 (the "
                              "playable squares)")
        for name, bounds in self._NUMBERS:
            value = getattr(self, name)
            if name == "grad_clip" and value is None:
                continue
            try:
                value = _number(name, value, **bounds)
            except ConfigError as exc:
                if name != "grad_clip":
                    raise
                raise ConfigError(f"{exc} (or None: no clipping)") from None
            setattr(self, name, value)
        if self.warmup_steps is None:
            # mOthello warms up for 500 of 20,000 steps; a shrunk run keeps the proportion
            self.warmup_steps = min(DEFAULT_WARMUP_STEPS, self.max_steps // 10)
        if self.warmup_steps >= self.max_steps:
            raise ConfigError(f"TrainConfig.warmup_steps={self.warmup_steps}: expected fewer "
                              f"than max_steps={self.max_steps} (the learning rate would never "
                              "reach lr, and the cosine decay never start)")
        if isinstance(self.betas, (str, bytes, Mapping)) or not hasattr(self.betas, "__len__") \
                or len(self.betas) != 2:
            raise ConfigError(f"TrainConfig.betas={self.betas!r}: expected two numbers")
        try:
            self.betas = tuple(_number("betas", b, low=0, high=1, high_open=True)
                               for b in self.betas)
        except ConfigError:
            raise ConfigError(f"TrainConfig.betas={self.betas!r}: expected two numbers in "
                              "[0, 1)") from None
        weights = self.language_weights
        if weights is None:
            return
        if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
            raise ConfigError(f"TrainConfig.language_weights={weights!r}: expected None or a "
                              "list of numbers")
        items = weights.items() if isinstance(weights, Mapping) else enumerate(weights)
        try:
            floats = {k: _number("language_weights", w, low=0) for k, w in items}
        except ConfigError:
            raise ConfigError(f"TrainConfig.language_weights={weights!r}: expected numbers "
                              ">= 0") from None
        # a list (or a mapping language -> weight, see corpus.Corpus), whatever sequence
        # was given, so that it compares equal to the checkpoint's JSON on resume
        self.language_weights = floats if isinstance(weights, Mapping) else list(floats.values())

    # integer fields and their least value (seeds: as torch.manual_seed takes them)
    _INTEGERS = tuple((name, 1) for name in ("batch_size", "max_steps", "n_layers", "n_heads",
                                             "d_model", "d_mlp", "log_every", "eval_games",
                                             "keep_checkpoints", "threads")) \
        + tuple((name, 0) for name in ("warmup_steps", "eval_every", "checkpoint_every",
                                       "n_anchors", "seed", "language_seed"))
    # fields of a kind: (name, accepted types, what is expected)
    _CHOICES = (("device", (str,), "'auto', 'cpu', 'cuda' or 'cuda:N'"),
                ("compile", (bool, type(None)), "True, False or None (on for CUDA)"),
                ("bf16", (bool, type(None)), "True, False or None (on for CUDA)"),
                ("tf32", (bool,), "True or False"), ("wandb", (bool,), "True or False"),
                ("compile_mode", (str, type(None)), "a torch.compile mode or None"),
                ("wandb_project", (str,), "a project name"),
                ("attention_backend", (str,), "an attention backend name"))
    # integer fields that may be None, and what None means
    _OPTIONAL = {"keep_checkpoints": "keep all", "threads": "torch's default",
                 "warmup_steps": "min(500, max_steps // 10)"}
    # float fields and their bounds (check_float's)
    _NUMBERS = (("lr", {"low": 0, "low_open": True}),
                ("weight_decay", {"low": 0}),
                # a negative clip would reverse the gradients (clip_grad_norm_ scales by it)
                ("grad_clip", {"low": 0}),
                ("min_lr_ratio", {"low": 0, "high": 1}),
                ("dropout", {"low": 0, "high": 1, "high_open": True}))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"TrainConfig fields {data!r}: expected a mapping field -> value")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))   # YAML keys may be numbers
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {unknown}; expected some of "
                              f"{sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"bad TrainConfig: {exc}") from None

    def model_config(self, vocab_size: int, context_length: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, context_length=context_length,
                         n_layers=self.n_layers, n_heads=self.n_heads, d_model=self.d_model,
                         d_mlp=self.d_mlp, dropout=self.dropout,
                         attention_backend=self.attention_backend)


def _number(name: str, value, **bounds) -> float:
    """`value` as a float, or `ConfigError` naming TrainConfig.`name`. Numeric strings are
    taken: YAML 1.1 reads ``1e-3`` as one."""
    return check_float(f"TrainConfig.{name}", value, strings=True, error=ConfigError, **bounds)


def load_train_config(path=None, overrides=()) -> TrainConfig:
    """A `TrainConfig` from a JSON or YAML file of its fields, or from a training run (its
    directory or its ``config.json``: the config it was trained with), or the defaults;
    then ``key=value`` overrides (values parsed as YAML: ``lr=1e-3``,
    ``betas=[0.9,0.99]``, ``compile=true``)."""
    import yaml

    data: dict = {}
    if path is not None:
        path = as_path(path, "config path", error=ConfigError)
    if path is not None and Path(path).is_dir():
        if not (Path(path) / RUN_CONFIG).exists():
            raise ConfigError(f"{str(path)!r} is a directory without {RUN_CONFIG}: expected a "
                              "config file or a training run's directory")
        path = Path(path) / RUN_CONFIG
    if path is not None:
        try:   # UnicodeDecodeError is a ValueError: a file that is not text
            text = Path(path).read_text(encoding="utf-8")
            data = (json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)) or {}
        except (ValueError, yaml.YAMLError, RecursionError) as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid JSON/YAML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} holds {type(data).__name__}; expected a "
                              "mapping of TrainConfig fields")
        if isinstance(data.get("train_config"), dict) and "model_config" in data:
            data = dict(data["train_config"])   # a run's config.json
    if isinstance(overrides, (str, bytes)) or not hasattr(overrides, "__iter__"):
        raise ConfigError(f"overrides={overrides!r}: expected a list of 'key=value' strings")
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(f"override {item!r}: expected a 'key=value' string")
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            data[key.strip()] = yaml.safe_load(value)
        except (yaml.YAMLError, RecursionError) as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML "
                              f"({' '.join(str(exc).split())})") from None
    return TrainConfig.from_dict(data)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Learning rate of step `step` (0-based): linear warm-up over `warmup_steps`, then
    cosine decay to ``min_lr_ratio * lr`` at `max_steps`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def make_optimizer(model: GPT, config: TrainConfig, *, fused: bool = False) -> torch.optim.AdamW:
    """AdamW with weight decay on the linear layers' weights only (not on embeddings,
    LayerNorms or biases), as in minGPT and mOthello's code."""
    decay = {f"{name}.weight" for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear)}
    params = dict(model.named_parameters())
    groups = [{"params": [p for n, p in params.items() if n in decay],
               "weight_decay": config.weight_decay},
              {"params": [p for n, p in params.items() if n not in decay], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=fused or None)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor,
               targets: torch.Tensor, *, autocast=None, grad_clip: float | None = 1.0,
               loss_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on tokens/targets int64 [B, T] (targets -100 ignored).

    model: a GPT, possibly compiled and/or DDP-wrapped; autocast: a context manager
    (e.g. ``torch.autocast("cuda", dtype=torch.bfloat16)``) or None; loss_scale
    multiplies the loss before backward (DDP normalisation). Returns the detached
    loss and the gradient norm before clipping, as tensors (no device sync).
    """
    with autocast if autocast is not None else nullcontext():
        _, loss = model(tokens, targets)
    if loss_scale is not None:
        loss = loss * loss_scale
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach(), grad_norm


@dataclass
class TrainResult:
    model: GPT                     # the trained model (eval mode, unwrapped)
    language_set: object
    metrics: list[dict] = field(default_factory=list)   # logged by rank 0 only
    checkpoint: Path | None = None
    rank: int = 0                  # this process's rank under torchrun (0 otherwise)


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step) * 4096 + rank & (2**63 - 1)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False      # this call initialised the process group

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextmanager
def process_group(device: str = "auto"):
    """Under torchrun (WORLD_SIZE > 1), the process group for everything inside: created
    when there is none (NCCL for a CUDA `device`, else gloo) and destroyed on the way out;
    one that exists is used as it is. Yields this process's `_Dist`. Work that trains
    several times in one job (the transfer protocol, a study cell) holds one group around
    all of it: a group destroyed and created again within a torchrun job can find the old
    group's addresses in the job's store and hang."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield _Dist()
        return
    owned = not dist.is_initialized()
    if owned:
        cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield _Dist(rank=dist.get_rank(), world=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")), owned=owned)
    finally:
        if owned:
            dist.destroy_process_group()


def _resolve_device(config: TrainConfig, ddp: _Dist) -> torch.device:
    device = resolve_device(config.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", ddp.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


_LANGUAGE_FIELDS = ("languages", "n_anchors", "objective", "language_seed")


def _languages_of(run) -> str:
    """The language fields of a `TrainConfig` or of a checkpoint's train config, in words."""
    fields = run.to_dict() if isinstance(run, TrainConfig) else (run.train_config or {})
    if not fields:
        return f"the language set {run.language_set!r}"
    return (f"languages {fields.get('languages')!r}, {fields.get('n_anchors')} anchors, the "
            f"{fields.get('objective')} objective, language_seed {fields.get('language_seed')}")


def _wrap_ddp(model: GPT, device_ids):
    """`model` under DistributedDataParallel, without the per-step buffer broadcast: the
    only buffer, `positions`, is constant (the same on every process)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # torch >= 2.13 renames broadcast_buffers (deprecated) to forward_sync_buffers
    name = ("forward_sync_buffers" if "forward_sync_buffers"
            in inspect.signature(DistributedDataParallel.__init__).parameters
            else "broadcast_buffers")
    return DistributedDataParallel(model, device_ids=device_ids, **{name: False})


def _restore_loss_window(ckpt, ddp: _Dist, device: torch.device) -> tuple[torch.Tensor, int]:
    """(loss sum float32 [] of this process, steps) of the window not logged when `ckpt`
    was written; zeros for a fresh run or a checkpoint without one."""
    saved = (ckpt.extra.get("loss_window") if ckpt is not None else None) or {}
    sums, steps = saved.get("sums") or [0.0], int(saved.get("steps", 0))
    # with another number of processes each takes the mean, which all_reduce preserves
    mine = sums[ddp.rank] if len(sums) == ddp.world else sum(sums) / len(sums)
    return torch.tensor(mine, dtype=torch.float32, device=device), steps


@contextmanager
def _tf32(enabled: bool):
    """TF32 fp32 matmuls and convolutions on CUDA (`enabled`) while training, and the
    process's own settings again afterwards, so that work done after training in the
    same process (k-means, probes, geometry) keeps the precision its caller chose."""
    backends = torch.backends
    try:
        saved = backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32

        def restore():
            backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = saved
    except RuntimeError:
        # torch >= 2.9 refuses to read allow_tf32 once the caller set TF32 by the new API
        # (fp32_precision), "a mix of the legacy and new APIs"; save and restore by that one
        parts = backends.cuda.matmul, backends.cudnn.conv, backends.cudnn.rnn
        saved = tuple(part.fp32_precision for part in parts)

        def restore():
            for part, value in zip(parts, saved):
                part.fp32_precision = value
    backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        restore()


def train(config: TrainConfig, *, train_games, val_games, out_dir, language_set=None,
          language_games=None, init_from=None, init_languages: bool = False,
          resume: bool = False, source: dict | None = None,
          progress: bool = True) -> TrainResult:
    """Train a GPT on `train_games` (int8 [n, 60]) written in the config's languages.

    val_games: int8 [m, 60], held out; the first `eval_games` are used to measure
    legal-move accuracy and loss per language every `eval_every` steps.
    language_set: use this `LanguageSet` instead of building one from the config
    (on resume, the checkpoint's is used by default).
    language_games: per-language game indices or masks, passed to `corpus.Corpus`.
    init_from: a checkpoint whose weights start the run (fine-tuning); the optimizer
    and the step start afresh. Its language set must be this run's (`CheckpointError`
    otherwise), unless `init_languages`: then the run takes the checkpoint's languages
    (its language fields of the config too, so that config.json records them).
    resume: continue from the newest checkpoint in `out_dir` (a fresh start if there is
    none), with its config and training games (`CheckpointError` otherwise). The run's
    directory is a `runs.Run`; while it trains, the run holds ``out_dir/train.lock``
    (`storage.writer_lock`): a second run into it is refused. source: JSON-ready facts
    of where the games came from, recorded in ``config.json`` (`train_on_dataset`: the
    dataset and its split), so that a resumed run can find them again.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config={config!r}: expected a TrainConfig (TrainConfig.from_dict "
                          "reads a dict; load_train_config a file)")
    train_games = validate_games(train_games, name="train_games")
    val_games = validate_games(val_games, name="val_games")
    out_dir = as_path(out_dir, "out_dir", error=ConfigError)
    with process_group(str(config.device)) as ddp, _tf32(config.tf32), \
            torch_threads(config.threads), Run(out_dir).lock(ddp.main):
        return _train(config, ddp, train_games=train_games, val_games=val_games,
                      out_dir=out_dir, language_set=language_set,
                      language_games=language_games, init_from=init_from,
                      init_languages=init_languages, resume=resume, source=source,
                      progress=progress)


def _train(config: TrainConfig, ddp: _Dist, *, train_games, val_games, out_dir: Path,
           language_set, language_games, init_from, init_languages: bool, resume: bool,
           source: dict | None, progress: bool) -> TrainResult:
    from .corpus import Corpus
    from .languages import LanguageSet

    # -- where: the device, the run directory, the checkpoints to start from ---------------
    device = _resolve_device(config, ddp)
    cuda = device.type == "cuda"
    if config.batch_size % ddp.world:
        raise ConfigError(f"batch_size={config.batch_size} is not divisible by the "
                          f"{ddp.world} processes")
    run = Run(out_dir)
    resume_from = run.start(resume)
    if ddp.world > 1:
        dist.barrier()  # every process has looked at out_dir before rank 0 writes into it
    ckpt = load_checkpoint(resume_from) if resume_from is not None else None
    init = load_checkpoint(init_from) if init_from is not None else None

    # -- what: the language set, checked against both checkpoints --------------------------
    if init is not None and init_languages:
        # the checkpoint's languages, recorded as this run's own in its config
        config = dataclasses.replace(config, **{k: v for k, v in (init.train_config or {}).items()
                                                if k in _LANGUAGE_FIELDS})
        if language_set is None:
            language_set = init.language_set
    if language_set is None:
        language_set = ckpt.language_set if ckpt is not None else LanguageSet.from_spec(
            config.languages, n_anchors=config.n_anchors, unified=config.objective == "unified",
            seed=config.language_seed)
    elif ckpt is not None and language_set.to_dict() != ckpt.language_set.to_dict():
        raise CheckpointError(f"cannot resume from {str(ckpt.path)!r}: it was trained with "
                              "another language set")
    if init is not None and ckpt is None \
            and language_set.to_dict() != init.language_set.to_dict():
        raise CheckpointError(
            f"init_from={str(init.path)!r} was trained with {_languages_of(init)}; this run "
            f"has {_languages_of(config)}: expected the same language set (the token ids "
            "must mean the same squares), or init_languages=True (--init-languages) to take "
            "the checkpoint's")
    digests = data_digests(train_games, val_games, language_games, language_set)
    records = []
    if ckpt is not None:
        check_resume(ckpt, config.to_dict(), ignored=TrainConfig.RUNTIME_FIELDS, device=device,
                     world=ddp.world, main=ddp.main, digests=digests)
        # the records up to the checkpoint we resume from (read by every process, so that
        # a bad log stops them all)
        records = run.read_metrics(up_to_step=ckpt.step)

    # -- the model and its optimizer, fresh, resumed or initialised from a checkpoint ------
    torch.manual_seed(config.seed)
    model_config = config.model_config(language_set.vocab_size, language_set.context_length)
    model = GPT(model_config).to(device)
    optimizer = make_optimizer(model, config, fused=cuda)
    start_step = 0
    if ckpt is not None:
        load_weights(model, ckpt.model_state, source=str(ckpt.path))
        if ckpt.optimizer_state is None:
            raise CheckpointError(f"cannot resume from {str(ckpt.path)!r}: it holds no "
                                  "optimizer state")
        try:
            optimizer.load_state_dict(ckpt.optimizer_state)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"cannot resume from {str(ckpt.path)!r}: its optimizer state "
                                  f"does not fit ({exc})") from None
        restore_rng_state(ckpt.rng_state)
        start_step = ckpt.step
    elif init is not None:
        if init.model_config != model_config:
            raise CheckpointError(f"init_from={str(init.path)!r} has model config "
                                  f"{init.model_config}; this run builds {model_config}")
        load_weights(model, init.model_state, source=str(init.path))
    ddp_model = model
    if ddp.world > 1:
        ddp_model = _wrap_ddp(model, device_ids=[device.index] if cuda else None)
    compiled = config.compile if config.compile is not None else cuda
    step_model = torch.compile(ddp_model, mode=config.compile_mode) if compiled else ddp_model
    bf16 = config.bf16 if config.bf16 is not None else cuda
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext())

    # -- the data -----------------------------------------------------------------------------
    corpus = Corpus(train_games, language_set, batch_size=config.batch_size,
                    objective=config.objective, weights=config.language_weights,
                    language_games=language_games, seed=config.seed, device=str(device))
    eval_games = val_games[:config.eval_games]
    if ddp.main and not len(eval_games):
        warnings.warn("val_games is empty: this run measures no legal-move accuracy or held-out "
                      "loss (give held-out games, e.g. a larger val_fraction)", stacklevel=3)
    per_rank = config.batch_size // ddp.world
    rows = slice(ddp.rank * per_rank, (ddp.rank + 1) * per_rank)   # this process's games

    # -- the run's record: config.json, the metrics so far, the progress bar ------------------
    if ddp.main:
        run.record(train_config=config.to_dict(), model_config=model_config.to_dict(),
                   language_set=language_set.to_dict(), world_size=ddp.world, source=source,
                   metrics=records)
    log = MetricsLog(run, records, enabled=ddp.main,
                     wandb_project=config.wandb_project if config.wandb else None,
                     wandb_config=config.to_dict())
    bar = progress_bar(progress and ddp.main, total=config.max_steps, initial=start_step,
                       unit="step", desc="training")
    shown: dict[str, str] = {}   # the bar's latest loss and accuracies
    checkpoint_path = ckpt.path if ckpt is not None else None
    tokens_per_step = config.batch_size * language_set.context_length

    # -- the loop: at each step, evaluate and save as due, then train on one batch ----------
    loss_sum, window = _restore_loss_window(ckpt, ddp, device)   # the window not logged yet
    timed, window_start = 0, time.perf_counter()   # steps since window_start
    step = start_step
    model.train()
    try:
        while True:
            last = step == config.max_steps
            # a resumed run evaluated and saved its first step before it stopped
            if (step > start_step or step == 0) and ddp.main and len(eval_games) and (
                    last or (config.eval_every and step % config.eval_every == 0)):
                record = {"step": step, **evaluate_languages(model, language_set, eval_games,
                                                             objective=config.objective,
                                                             bf16=bf16)}
                log.write(record)
                shown.update({k.replace("legal_acc/", "acc/"): f"{v:.3f}"
                              for k, v in record.items() if k.startswith("legal_acc")})
                bar.set_postfix(shown, refresh=False)
            if step > start_step and (last or (config.checkpoint_every
                                               and step % config.checkpoint_every == 0)):
                # the loss window not logged yet, each process's own sum, so that a resumed
                # run logs the same mean loss as the uninterrupted one
                sums = [loss_sum]
                if ddp.world > 1 and window:
                    sums = [torch.zeros_like(loss_sum) for _ in range(ddp.world)]
                    dist.all_gather(sums, loss_sum)
                checkpoint_path = run.checkpoint_path(step)
                if ddp.main:
                    save_checkpoint(checkpoint_path, model=model, language_set=language_set,
                                    step=step, optimizer=optimizer,
                                    train_config=config.to_dict(), extra={
                                        "run": {"device_type": device.type,
                                                "world_size": ddp.world, **digests},
                                        "loss_window": {"steps": window,
                                                        "sums": [float(x) for x in sums]}})
                    run.prune(config.keep_checkpoints)
                if ddp.world > 1:
                    dist.barrier()
            if last:
                break
            if step % config.log_every == 0:
                window_start = time.perf_counter()  # exclude evaluation and checkpoint time

            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = corpus.batch(step)
            tokens = torch.as_tensor(batch.tokens[rows], device=device)
            targets = torch.as_tensor(batch.targets[rows], device=device)
            torch.manual_seed(_step_seed(config.seed, step, ddp.rank))
            scale = None
            if ddp.world > 1:  # mean over the global batch's targets, whatever the split
                n_global = (torch.as_tensor(batch.targets, device=device) != -100).sum()
                scale = (targets != -100).sum() * ddp.world / n_global
            loss, grad_norm = train_step(step_model, optimizer, tokens, targets,
                                         autocast=autocast, grad_clip=config.grad_clip,
                                         loss_scale=scale)
            loss_sum += loss
            window += 1
            timed += 1
            step += 1
            bar.update(1)

            if step % config.log_every == 0 or step == config.max_steps:
                if ddp.world > 1:
                    dist.all_reduce(loss_sum)
                    loss_sum /= ddp.world
                loss_value = loss_sum.item()  # waits for the device: the clock reads work done
                elapsed = time.perf_counter() - window_start
                record = {"step": step, "loss": loss_value / window, "lr": lr,
                          "grad_norm": float(grad_norm),
                          "tokens_per_s": timed * tokens_per_step / elapsed}
                log.write(record)
                shown["loss"] = f"{record['loss']:.4f}"
                bar.set_postfix(shown, refresh=False)
                loss_sum.zero_()
                window, timed = 0, 0
    finally:
        bar.close()
        log.close()
    return TrainResult(model=model.eval(), language_set=language_set, metrics=log.records,
                       checkpoint=checkpoint_path, rank=ddp.rank)


def train_on_dataset(config: TrainConfig, data, *, out_dir, val_fraction: float = 0.01,
                     split_seed: int = 0, **kwargs) -> TrainResult:
    """`train` on a games dataset directory `data`, split at random (`split_games`) into
    training and held-out games (the run's ``config.json`` records the dataset and the
    split, for `runs.run_source`); other keyword arguments go to `train`."""
    from .datasets import load_games

    train_games, val_games = load_games(data).split(val_fraction=val_fraction, seed=split_seed)
    source = {"data": str(Path(data).resolve()), "val_fraction": val_fraction,
              "split_seed": split_seed}
    return train(config, train_games=train_games, val_games=val_games, out_dir=out_dir,
                 source=source, **kwargs)


def legal_move_curves(metrics: list[dict]) -> tuple[list[int], dict[str, list[float]]]:
    """(steps, language -> legal-move accuracy at each step) from a run's records (as
    `TrainResult.metrics` or metrics.jsonl hold them): its evaluations, by step, a later
    record of a step replacing an earlier one (a resumed run repeats the step it resumed
    from)."""
    records = {}
    for record in metrics:
        if any(k.startswith("legal_acc/") for k in record):
            records[record["step"]] = record
    steps = sorted(records)
    languages = [k.split("/", 1)[1] for k in records[steps[0]] if k.startswith("legal_acc/")] \
        if steps else []
    return steps, {name: [float(records[step][f"legal_acc/{name}"]) for step in steps]
                   for name in languages}
