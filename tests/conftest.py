"""Test configuration shared by every test file.

Without CUDA, Triton kernels run under its interpreter on CPU tensors; Triton
reads TRITON_INTERPRET when a kernel is defined, so it is set here, before any
test module imports the kernels.
"""
import os
import shutil

if shutil.which("nvidia-smi") is None and not os.environ.get("CUDA_VISIBLE_DEVICES"):
    os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402  (after the environment is set)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models run fastest on one thread, and do not fight other tests for cores."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
