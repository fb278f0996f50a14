"""Kernels for attention and board probes (importable as ``mothello_fast.kernels``).

Each kernel has a plain-torch reference beside it and a dispatcher that picks
the Triton kernel on CUDA (or under ``TRITON_INTERPRET=1``) and the reference
elsewhere.
"""
