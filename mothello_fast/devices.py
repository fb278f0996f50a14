"""Where tensors go: ``None`` or ``"auto"`` means CUDA when present, the CPU otherwise."""
from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as a `torch.device`; ``None`` or ``"auto"``: CUDA when present, else the CPU.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
