"""Where tensors go: a device this machine cannot use is refused when it is named."""
import pytest
import torch

from mothello_fast.devices import resolve_device
from mothello_fast.errors import MothelloError


@pytest.mark.parametrize("device, available", [
    ("mps", lambda: torch.backends.mps.is_available()),
    ("xpu", lambda: hasattr(torch, "xpu") and torch.xpu.is_available())])
def test_a_device_type_this_machine_lacks_is_refused(device, available):
    if available():
        pytest.skip(f"this machine has {device}")
    with pytest.raises(MothelloError, match=rf"device='{device}': .*use 'cpu' or 'auto'"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["cpu", "cpu:0", "meta", torch.device("meta")])
def test_the_cpu_and_the_meta_device_are_always_there(device):
    assert resolve_device(device) == torch.device(device)


def test_a_second_cuda_device_on_a_one_gpu_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(MothelloError, match=r"device='cuda:1': this machine has 1 CUDA device"):
        resolve_device("cuda:1")
