"""Checkpoints: a directory of safetensors files and a JSON manifest, written atomically.

Layout of a checkpoint directory::

    model.safetensors       the GPT's weights
    optimizer.safetensors   optimizer state tensors and RNG states (training checkpoints)
    checkpoint.json         format version, step, model/train configs, language set,
                            optimizer hyper-parameters, byte size and sha256 of each file,
                            and the sha256 of the manifest itself (`manifest_sha256`)

The directory is first written as ``DIR.partial/`` (each file fsynced) and renamed
to ``DIR`` once ``checkpoint.json`` is in it, so a checkpoint directory that exists
is whole. `load_checkpoint` still checks every file's size and sha256 against the
manifest, and refuses with `CheckpointError` a checkpoint that is truncated,
corrupted, or from a config that does not fit the model it is loaded into.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .storage import (as_path, atomic_write_json, check_replaceable, manifest_digest,
                      replace_directory)
from .devices import resolve_device
from .errors import CheckpointError, MothelloError, check_int
from .model import GPT, GPTConfig, unwrap

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "load_model", "resolve_checkpoint",
           "find_latest_checkpoint", "list_checkpoints", "prune_checkpoints", "FORMAT_VERSION"]

FORMAT_VERSION = 1
MANIFEST = "checkpoint.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
MANIFEST_DIGEST = "manifest_sha256"
_STEP_DIR = re.compile(r"step-(\d+)")


@dataclass
class Checkpoint:
    """What `load_checkpoint` read: the manifest's fields and the weights."""
    path: Path
    step: int
    model_config: GPTConfig
    language_set: object            # languages.LanguageSet
    train_config: dict | None
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict | None = None   # torch optimizer state_dict
    rng_state: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def build_model(self, device: str | torch.device = "cpu") -> GPT:
        """A `GPT` with this checkpoint's config and weights, in eval mode on `device`
        (see `devices.resolve_device`: "auto" is CUDA when present)."""
        device = resolve_device(device)   # names a device this machine lacks
        model = GPT(self.model_config)
        load_weights(model, self.model_state, source=str(self.path))
        return model.to(device).eval()


def _rng_state() -> dict[str, torch.Tensor]:
    states = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda.{i}"] = state
    return states


def restore_rng_state(states: dict[str, torch.Tensor]) -> None:
    """Set torch's (and CUDA's, where saved and present) RNG states from a `Checkpoint`."""
    if "rng.torch" in states:
        torch.set_rng_state(states["rng.torch"])
    cuda_keys = sorted((k for k in states if k.startswith("rng.cuda.")),
                       key=lambda k: int(k.rsplit(".", 1)[1]))
    cuda = [states[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _optimizer_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into flat tensors and a JSON-able rest."""
    tensors, scalars = {}, {}
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_state_dict(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g)
              for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _write_file(path: Path, data: bytes) -> dict:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def save_checkpoint(path, *, model: torch.nn.Module, language_set, step: int = 0,
                    optimizer: torch.optim.Optimizer | None = None,
                    train_config: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint directory at `path` atomically (replacing one already there).

    model: a `GPT` (compiled or DDP-wrapped is fine); language_set: its `LanguageSet`;
    optimizer: saved with torch's RNG states when given (a training checkpoint);
    train_config: the trainer's config as a dict; extra: any JSON-able metadata.
    """
    path = as_path(path, "path", error=CheckpointError)
    gpt = unwrap(model)
    if not isinstance(getattr(gpt, "config", None), GPTConfig):
        raise CheckpointError(f"model={model!r}: expected a GPT")
    if not callable(getattr(language_set, "to_dict", None)) \
            or not hasattr(language_set, "vocab_size"):
        raise CheckpointError(f"language_set={language_set!r}: expected a LanguageSet")
    language_set.check_model(gpt)
    for name, value in (("train_config", train_config), ("extra", extra)):
        if value is not None and not isinstance(value, dict):
            raise CheckpointError(f"{name}={value!r}: expected a dict or None")
    if optimizer is not None and not callable(getattr(optimizer, "state_dict", None)):
        raise CheckpointError(f"optimizer={optimizer!r}: expected a torch optimizer or None")
    step = check_int("step", step, least=0, error=CheckpointError)
    check_replaceable(path, MANIFEST, "checkpoint", error=CheckpointError)
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in gpt.state_dict().items()}
    files = {MODEL_FILE: _write_file(partial / MODEL_FILE, st_save(weights))}
    optimizer_meta = None
    if optimizer is not None:
        tensors, optimizer_meta = _optimizer_tensors(optimizer.state_dict())
        tensors.update(_rng_state())
        files[OPTIMIZER_FILE] = _write_file(partial / OPTIMIZER_FILE, st_save(tensors))
    manifest = {"format": "mothello-checkpoint", "format_version": FORMAT_VERSION,
                "step": step, "model_config": gpt.config.to_dict(),
                "language_set": language_set.to_dict(), "train_config": train_config,
                "optimizer": optimizer_meta, "extra": extra or {}, "files": files}
    try:
        manifest = json.loads(json.dumps(manifest))   # as it will read back (int keys -> str)
    except (TypeError, ValueError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise CheckpointError(f"the checkpoint's metadata is not JSON ({exc}): expected "
                              "train_config and extra of JSON values") from None
    manifest[MANIFEST_DIGEST] = _manifest_digest(manifest)
    atomic_write_json(partial / MANIFEST, manifest)
    replace_directory(partial, path)
    return path


def _manifest_digest(manifest: dict) -> str:
    """`storage.manifest_digest` of a checkpoint manifest."""
    return manifest_digest(manifest, MANIFEST_DIGEST)


def _read_manifest(path: Path) -> dict:
    if path.is_file() and path.name in (MODEL_FILE, OPTIMIZER_FILE, MANIFEST):
        path = path.parent
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        partial = path.with_name(path.name + ".partial")
        hint = (f"; {str(partial)!r} holds an unfinished write" if partial.exists() else "")
        raise CheckpointError(f"no checkpoint at {str(path)!r}: {MANIFEST} is missing{hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
        version = manifest["format_version"]
        required = ("step", "files", "model_config", "language_set")
        missing = [k for k in required if k not in manifest]
        if missing:
            raise KeyError(f"missing {missing}")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{str(manifest_path)!r} is truncated or not a checkpoint manifest "
                              f"({type(exc).__name__}: {exc})") from None
    # manifests written before the digest existed have none and are taken as they are
    if MANIFEST_DIGEST not in manifest:
        warnings.warn(f"{str(manifest_path)!r} has no {MANIFEST_DIGEST} (written before "
                      "manifests carried one): its fields are checked for type only",
                      stacklevel=3)
    elif manifest[MANIFEST_DIGEST] != _manifest_digest(manifest):
        raise CheckpointError(f"{str(manifest_path)!r} is corrupted: its contents do not match "
                              f"its {MANIFEST_DIGEST}")
    _check_manifest_fields(manifest, manifest_path)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version {version!r}; this "
                              f"version of mothello-fast reads version {FORMAT_VERSION}")
    return manifest


def _check_manifest_fields(manifest: dict, where: Path) -> None:
    """Every field a load reads, of the type it is read as (`CheckpointError` naming the
    field otherwise): a manifest without its digest may hold anything."""
    def bad(field: str, value, expected: str):
        raise CheckpointError(f"{str(where)!r}: {field}={value!r}: expected {expected}")

    step = manifest["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        bad("step", step, "an integer >= 0")
    for key in ("model_config", "language_set"):
        if not isinstance(manifest[key], dict):
            bad(key, manifest[key], "a JSON object")
    for key in ("train_config", "extra", "optimizer"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            bad(key, manifest[key], "a JSON object or null")
    files = manifest["files"]
    if not isinstance(files, dict):
        bad("files", files, "a JSON object of file name -> {bytes, sha256}")
    for name, meta in files.items():
        if name not in (MODEL_FILE, OPTIMIZER_FILE):
            bad("files", name, f"{MODEL_FILE!r} or {OPTIMIZER_FILE!r} (a file of the checkpoint)")
        if not isinstance(meta, dict) or isinstance(meta.get("bytes"), bool) \
                or not isinstance(meta.get("bytes"), int) or not isinstance(meta.get("sha256"),
                                                                             str):
            bad(f"files[{name!r}]", meta, "{'bytes': an integer, 'sha256': a hex digest}")


def _read_file(directory: Path, name: str, meta: dict, verify: bool) -> dict[str, torch.Tensor]:
    """The tensors of safetensors file `name` (on the CPU), checked against `meta`."""
    file = directory / name
    if not file.exists():
        raise CheckpointError(f"checkpoint {str(directory)!r}: {name} is missing")
    size = file.stat().st_size
    if size != meta["bytes"]:
        raise CheckpointError(f"checkpoint {str(directory)!r}: {name} is truncated or corrupted: "
                              f"{size} bytes, expected {meta['bytes']}")
    data = file.read_bytes()
    if verify:
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise CheckpointError(f"checkpoint {str(directory)!r}: {name} is corrupted: its "
                                  "sha256 does not match checkpoint.json")
    try:
        return st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint {str(directory)!r}: {name} is corrupted and cannot be "
                              f"read ({exc})") from None


def _config_differences(saved: dict, current: dict) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [f"{k}: checkpoint {saved.get(k)!r}, expected {current.get(k)!r}"
            for k in keys if saved.get(k) != current.get(k)]


def resolve_checkpoint(path) -> Path:
    """The checkpoint directory that `path` names: a checkpoint directory (or a file in
    it); ``RUN/checkpoints/latest``, a run directory ``RUN`` or its ``RUN/checkpoints``:
    the newest complete checkpoint there."""
    path = as_path(path, "checkpoint", error=CheckpointError)
    if path.is_file():   # a file of a checkpoint, or a run's config.json: their directory
        path = path.parent
    if (path / MANIFEST).exists():
        return path
    for directory in (path.parent if path.name == "latest" else None, path / "checkpoints",
                      path):
        if directory is not None and directory.is_dir():
            latest = find_latest_checkpoint(directory)
            if latest is not None:
                return latest
    return path   # reading it names what is missing


def load_checkpoint(path, *, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    verify: bool = True, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and check the checkpoint directory `path` (see `resolve_checkpoint`: a run
    directory or ``RUN/checkpoints/latest`` gives its newest checkpoint).

    With `model`, its config must equal the checkpoint's (else `CheckpointError`
    listing the differing fields) and the weights are loaded into it; with
    `optimizer`, the optimizer state too. RNG states are returned, not applied
    (see `restore_rng_state`), and stay on the CPU; the weights and optimizer state
    tensors are moved to `map_location`. `verify` checks each file's sha256.
    """
    from .languages import LanguageSet

    path = resolve_checkpoint(path)
    try:
        location = resolve_device(torch.device(map_location))   # a CUDA device that is there
    except (RuntimeError, TypeError, MothelloError) as exc:
        raise CheckpointError(f"map_location={map_location!r} is not a device of this machine "
                              f"({exc})") from None
    manifest = _read_manifest(path)
    files = manifest["files"]
    if MODEL_FILE not in files:
        raise CheckpointError(f"checkpoint {str(path)!r} lists no {MODEL_FILE}")
    try:
        config = GPTConfig.from_dict(manifest["model_config"])
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} has an invalid model config: "
                              f"{exc}") from None
    if model is not None:
        diffs = _config_differences(config.to_dict(), unwrap(model).config.to_dict())
        if diffs:
            raise CheckpointError(f"checkpoint {str(path)!r} is from an incompatible model "
                                  f"config: {'; '.join(diffs)}")
    language_set = LanguageSet.from_dict(manifest["language_set"])
    try:
        language_set.check_model(config)
    except MothelloError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: its language set does not fit its "
                              f"model ({exc})") from None
    weights = {k: v.to(location) for k, v in
               _read_file(path, MODEL_FILE, files[MODEL_FILE], verify).items()}
    ckpt = Checkpoint(path=path, step=int(manifest["step"]), model_config=config,
                      language_set=language_set,
                      train_config=manifest.get("train_config"), model_state=weights,
                      extra=manifest.get("extra") or {})
    if OPTIMIZER_FILE in files:
        tensors = _read_file(path, OPTIMIZER_FILE, files[OPTIMIZER_FILE], verify)
        ckpt.rng_state = {k: v for k, v in tensors.items() if k.startswith("rng.")}
        try:
            ckpt.optimizer_state = _optimizer_state_dict(
                {k: v.to(location) for k, v in tensors.items() if k.startswith("state.")},
                manifest["optimizer"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {str(path)!r} has an optimizer state that does "
                                  f"not read back ({type(exc).__name__}: {exc})") from None
    if model is not None:
        load_weights(model, weights, source=str(path))
    if optimizer is not None:
        if ckpt.optimizer_state is None:
            raise CheckpointError(f"checkpoint {str(path)!r} holds no optimizer state (it is not "
                                  "a training checkpoint)")
        try:
            optimizer.load_state_dict(ckpt.optimizer_state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {str(path)!r}: optimizer state does not fit this "
                                  f"optimizer ({exc})") from None
    return ckpt


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], *,
                 source: str = "state dict") -> None:
    """Copy `weights` (name -> tensor) into `model`, raising `CheckpointError` on a mismatch."""
    gpt = unwrap(model)
    try:
        gpt.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: weights do not fit the model "
                              f"({str(exc).splitlines()[0]} ...)") from None


def load_model(path, *, device: str | torch.device = "cpu", verify: bool = True):
    """Load a checkpoint's model for analysis: ``(GPT in eval mode on `device`, LanguageSet)``."""
    ckpt = load_checkpoint(path, verify=verify)
    return ckpt.build_model(device), ckpt.language_set


def _step_directories(directory) -> list[Path]:
    """The directories named exactly ``step-N`` (N digits) in `directory`, by ascending N;
    other names (``step-N.partial``, ``step-N-copy``, ...) are not checkpoints of the run."""
    directory = as_path(directory, "directory", error=CheckpointError)
    if not directory.is_dir():
        return []
    steps = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(steps)]


def list_checkpoints(directory) -> list[Path]:
    """The complete checkpoints ``step-N`` in `directory` (a run's ``checkpoints/``), by
    ascending step."""
    return [p for p in _step_directories(directory) if (p / MANIFEST).exists()]


def find_latest_checkpoint(directory) -> Path | None:
    """The highest-step complete checkpoint ``step-N`` in `directory` (None if there is none)."""
    complete = list_checkpoints(directory)
    return complete[-1] if complete else None


def prune_checkpoints(directory, keep: int | None) -> None:
    """Delete all but the newest `keep` step directories ``step-N`` of `directory` (a run's
    ``checkpoints/``), unfinished ones included; None keeps all."""
    if keep is None:
        return
    keep = check_int("keep", keep, least=0, error=CheckpointError)
    for old in _step_directories(directory)[:-keep] if keep else _step_directories(directory):
        shutil.rmtree(old)
