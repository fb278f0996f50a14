"""Kernels for attention and board probes (importable as ``mothello_fast.kernels``).

Each kernel has a plain-torch reference beside it and a dispatcher whose
``backend="auto"`` picks the Triton kernel for CUDA tensors where it was measured
faster, and otherwise SDPA (attention) or the reference (probe);
``backend="triton"`` runs the kernel, on CPU tensors too under
``TRITON_INTERPRET=1`` (as the tests do):

- `attention`: dispatcher ``attention(q, k, v, *, dropout_p, causal, backend)`` and
  ``attention_reference``; the Triton forward/backward in `attention_triton`.
- `probe`: dispatcher ``probe_loss(x, weight, bias, labels, *, backend)`` and
  ``probe_loss_reference``; the fused Triton kernel in `probe_triton`.

The Triton modules are imported only when triton is installed; without it the
dispatchers fall back to the references (and SDPA for attention).
"""
