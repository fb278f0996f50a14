"""Where tensors go: ``None`` or ``"auto"`` means CUDA when present, the CPU otherwise."""
from __future__ import annotations

import torch

from .errors import MothelloError

__all__ = ["resolve_device", "memory_bytes", "check_fits_in_memory"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as a `torch.device`; ``None`` or ``"auto"``: CUDA when present, else the CPU.
    A device torch does not know, or a CUDA (or other) device this machine lacks, is a
    `MothelloError`.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise MothelloError(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N' "
                            "(a torch device)") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index or 0) >= count:
            raise MothelloError(f"device={device!r}: this machine has {count} CUDA device(s); "
                                "use 'cpu' or 'auto'")
    elif resolved.type != "cpu":
        try:   # another backend ('mps', 'xpu', ...): this build and machine must have it
            torch.empty(0, device=resolved)
        except Exception:   # each backend fails its own way (RuntimeError, AssertionError, ...)
            raise MothelloError(f"device={device!r}: torch cannot place tensors on it on this "
                                "machine; use 'cpu' or 'auto'") from None
    return resolved


def memory_bytes(device: str | torch.device = "cpu") -> int:
    """The memory of `device`: this machine's physical memory for the CPU, the GPU's own
    for a CUDA device (0 when it cannot be read)."""
    from .parallel import physical_memory

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return physical_memory()


def check_fits_in_memory(what: str, n_bytes: int, device: str | torch.device = "cpu", *,
                         error: type[MothelloError] = MothelloError) -> None:
    """`parallel.check_fits_in_memory` against the memory of `device`."""
    from .parallel import check_fits_in_memory as check

    check(what, n_bytes, total=memory_bytes(device), place=str(torch.device(device)),
          error=error)
