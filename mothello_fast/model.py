"""mOthelloGPT: a GPT-2-style decoder with TransformerLens hook names.

Pre-LayerNorm blocks, learned positions, GELU MLP, untied unembedding, dropout
0.1 (Othello-GPT and mOthello's shape). Every activation the analyses read passes
through a `HookPoint` (an identity module) named as in TransformerLens:

    hook_embed, hook_pos_embed                                      [B, T, d_model]
    blocks.{l}.hook_resid_pre                                       [B, T, d_model]
    blocks.{l}.ln1.hook_scale                                       [B, T, 1]
    blocks.{l}.ln1.hook_normalized                                  [B, T, d_model]
    blocks.{l}.attn.hook_q / hook_k / hook_v                        [B, T, n_heads, d_head]
    blocks.{l}.attn.hook_attn_scores / hook_pattern                 [B, n_heads, T, T]
    blocks.{l}.attn.hook_z                                          [B, T, n_heads, d_head]
    blocks.{l}.hook_attn_out, blocks.{l}.hook_resid_mid             [B, T, d_model]
    blocks.{l}.ln2.hook_scale, blocks.{l}.ln2.hook_normalized
    blocks.{l}.mlp.hook_pre / hook_post                             [B, T, d_mlp]
    blocks.{l}.hook_mlp_out, blocks.{l}.hook_resid_post             [B, T, d_model]
    ln_final.hook_scale, ln_final.hook_normalized

with TransformerLens's shapes and, for the LayerNorms, its definitions from version 3 on
(``hook_normalized`` before the weight and bias; TransformerLens 2.x recorded it after).
Attention scores are masked with -inf above the diagonal, as TransformerLens masks them.

A hook point without hooks is an identity call (and disappears under `torch.compile`);
the LayerNorm and attention compute their intermediates only when a hook reads them
(else the fused kernels run). `GPT.run_with_cache` attaches hooks only for the duration
of one forward pass; a hook function gets ``(activation, hook)``, ``hook.name`` its name,
``hook.layer()`` its block, as in TransformerLens.

>>> model = GPT(GPTConfig(vocab_size=61, context_length=59, n_layers=2, d_model=64,
...                       n_heads=4, d_mlp=256))
>>> logits, cache = model.run_with_cache(torch.zeros(3, 59, dtype=torch.long),
...                                      names_filter="blocks.1.hook_resid_post")
>>> tuple(logits.shape), tuple(cache["blocks.1.hook_resid_post"].shape)
((3, 59, 61), (3, 59, 64))
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .devices import check_fits_in_memory
from .errors import CheckpointError, MothelloError, check_float, check_int
from .kernels.attention import BACKENDS, attention

__all__ = ["GPTConfig", "GPT", "HookPoint", "ActivationCache", "act_name", "LayerPast",
           "flops_per_token",
           "to_transformer_lens"]


@dataclass
class GPTConfig:
    """Shape of a `GPT`. Defaults are Othello-GPT's (Li et al. 2023), which mOthello keeps."""
    vocab_size: int          # from the language set (pad id 0 included)
    context_length: int      # longest token sequence the model reads (positions learned)
    n_layers: int = 8
    n_heads: int = 8
    d_model: int = 512
    d_mlp: int = 2048        # 4 * d_model, as in GPT-2
    dropout: float = 0.1     # embeddings, attention probabilities and both residual branches
    attention_backend: str = "auto"  # passed to kernels.attention.attention as `backend`

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "n_layers", "n_heads", "d_model", "d_mlp"):
            # numpy integers too, stored as int for to_dict's JSON
            setattr(self, name, check_int(f"GPTConfig.{name}", getattr(self, name), least=1))
        if self.d_model % self.n_heads:
            raise MothelloError(f"GPTConfig: d_model={self.d_model} is not divisible by "
                                f"n_heads={self.n_heads}")
        self.dropout = check_float("GPTConfig.dropout", self.dropout, low=0, high=1,
                                   high_open=True)
        if self.attention_backend not in BACKENDS:
            raise MothelloError(f"GPTConfig.attention_backend={self.attention_backend!r}: expected "
                                f"one of {', '.join(map(repr, BACKENDS))}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> GPTConfig:
        if not isinstance(data, Mapping):
            raise MothelloError(f"GPTConfig fields {data!r}: expected a mapping field -> value")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MothelloError(f"GPTConfig: unknown field(s) {unknown}; expected some of "
                                f"{sorted(known)}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.name not in data]
        if missing:
            raise MothelloError(f"GPTConfig: missing field(s) {missing}")
        return cls(**data)


def flops_per_token(config: GPTConfig, seq_len: int | None = None) -> float:
    """Training FLOPs (forward + backward) per token: ``6 N + 12 L T d`` (PaLM's count),
    N the weights in matrix multiplies (unembedding included, embeddings not), T the
    sequence length (the context length by default)."""
    if not isinstance(config, GPTConfig):
        raise MothelloError(f"config={config!r}: expected a GPTConfig")
    T = config.context_length if seq_len is None else check_int(
        "seq_len", seq_len, least=0, error=MothelloError)
    d, L = config.d_model, config.n_layers
    n_matmul = L * (4 * d * d + 2 * d * config.d_mlp) + d * config.vocab_size
    return 6.0 * n_matmul + 12.0 * L * T * d


class HookPoint(nn.Module):
    """Identity module marking an activation; `GPT.run_with_cache` hooks it by name. A hook
    function gets the activation and this hook point, whose `name` is its full name (as
    TransformerLens passes its own HookPoint)."""

    def __init__(self):
        super().__init__()
        self.name: str | None = None   # set by GPT: "blocks.3.hook_resid_post"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def layer(self) -> int:
        """The block of a ``blocks.{l}.…`` hook point."""
        match = re.match(r"blocks\.(\d+)\.", self.name or "")
        if match is None:
            raise MothelloError(f"hook point {self.name!r} belongs to no block")
        return int(match.group(1))

    @property
    def hooked(self) -> bool:
        """Whether a hook is attached (then the modules around compute what it reads)."""
        return bool(self._forward_hooks)

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r})"


class LayerNorm(nn.Module):
    """LayerNorm with TransformerLens (>= 3) hooks: ``hook_scale`` ``[B, T, 1]`` (the
    standard deviation, with eps) and ``hook_normalized`` ``[B, T, d]`` (centred and
    divided by it, before the weight and bias). Without hooks on them, one fused
    ``F.layer_norm`` (the same numbers to float rounding)."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.hook_scale.hooked or self.hook_normalized.hooked):
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale) * self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.backend = config.attention_backend
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        # TransformerLens's shapes: q, k, v, z [B, T, nh, hs]; scores, pattern [B, nh, T, T]
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = (HookPoint(), HookPoint(),
                                                                 HookPoint())

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        return tuple(t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
                     for t in (q, k, v))

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        B, _, T, _ = y.shape
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, -1))  # (B, T, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        dropout = self.dropout if self.training else 0.0
        if not any(h.hooked for h in (self.hook_q, self.hook_k, self.hook_v,
                                      self.hook_attn_scores, self.hook_pattern, self.hook_z)):
            return self._merge(attention(q, k, v, dropout_p=dropout, causal=True,
                                         backend=self.backend))
        # a hook reads inside attention: the plain path, every intermediate materialised
        q, k, v = (hook(t.transpose(1, 2)).transpose(1, 2)
                   for hook, t in ((self.hook_q, q), (self.hook_k, k), (self.hook_v, v)))
        T = q.shape[2]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])   # (B, nh, T, T)
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=x.device)
                                    .tril(), float("-inf"))
        pattern = self.hook_pattern(self.hook_attn_scores(scores).softmax(-1))
        z = self.hook_z((F.dropout(pattern, dropout) @ v).transpose(1, 2))   # (B, T, nh, hs)
        return self.proj(z.reshape(*z.shape[:2], -1))

    def forward_cached(self, x: torch.Tensor, past: LayerPast | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attention of the new positions x ``[R, Tn, C]`` (causal among themselves) that
        also see `past`'s keys and values; returns (output ``[R, Tn, C]``, and the new
        positions' keys and values ``[R, nh, Tn, hs]``). Dropout off (inference only).

        A continuation reads its prefix's keys where they are, ``[B, nh, T, hs]``, never a
        copy of them per continuation: the queries are placed in a grid of (prefix row,
        slot), one product per prefix row serves all its continuations."""
        q, k, v = self._heads(x)
        R, _, Tn, hs = q.shape
        causal = torch.ones(Tn, Tn, dtype=torch.bool, device=x.device).tril()
        if past is None:
            return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=causal)), k, v
        scale = 1.0 / math.sqrt(hs)
        B, T = past.keys.shape[0], past.keys.shape[2]
        grid = q.new_zeros(B, past.n_slots, *q.shape[1:])               # (B, P, nh, Tn, hs)
        grid[past.rows, past.slots] = q
        prefix = torch.einsum("bpnqh,bnth->bpnqt", grid, past.keys)[past.rows, past.slots]
        prefix = prefix.float().masked_fill(~past.valid[:, None, None, :], float("-inf"))
        own_keys = torch.cat([past.generated_keys, k], dim=2)           # (R, nh, j + Tn, hs)
        own_values = torch.cat([past.generated_values, v], dim=2)
        own = (q @ own_keys.transpose(-2, -1)).float()                  # (R, nh, Tn, j + Tn)
        seen = torch.cat([torch.ones(Tn, own.shape[-1] - Tn, dtype=torch.bool,
                                     device=x.device), causal], dim=1)
        own = own.masked_fill(~seen, float("-inf"))
        probs = (torch.cat([prefix, own], dim=-1) * scale).softmax(-1).to(q.dtype)
        grid = probs.new_zeros(B, past.n_slots, *probs.shape[1:-1], T)  # (B, P, nh, Tn, T)
        grid[past.rows, past.slots] = probs[..., :T]
        y = torch.einsum("bpnqt,bnth->bpnqh", grid, past.values)[past.rows, past.slots] \
            + probs[..., T:] @ own_values                               # (R, nh, Tn, hs)
        return self._merge(y), k, v


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_mlp)
        self.hook_pre = HookPoint()    # [B, T, d_mlp] before the GELU
        self.hook_post = HookPoint()   # [B, T, d_mlp] after it
        self.proj = nn.Linear(config.d_mlp, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.hook_post(F.gelu(self.hook_pre(self.fc(x)))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()  # registered in forward order, so hook_names lists them that way
        self.hook_resid_pre = HookPoint()
        self.ln1 = LayerNorm(config.d_model)
        self.attn = Attention(config)
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.ln2 = LayerNorm(config.d_model)
        self.mlp = MLP(config)
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        return self._after_attention(x, self.attn(self.ln1(x)))

    def _after_attention(self, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_mid(x + self.hook_attn_out(self.dropout(attn_out)))
        return self.hook_resid_post(x + self.hook_mlp_out(self.dropout(self.mlp(self.ln2(x)))))

    def forward_cached(self, x: torch.Tensor, past: LayerPast | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward` of new positions that also attend to `past` (see
        `Attention.forward_cached`): (output, keys, values of the new positions)."""
        x = self.hook_resid_pre(x)
        out, k, v = self.attn.forward_cached(self.ln1(x), past)
        return self._after_attention(x, out), k, v


@dataclass
class LayerPast:
    """What new positions attend to at one layer, besides themselves (incremental decoding,
    `GPT.prefill` and `GPT.extend`).

    keys, values: ``[B, nh, T, hs]`` of a prefix pass over B sequences; rows: int64 ``[R]``,
    the sequence each continuation extends, and slots: int64 ``[R]``, its number among the
    continuations of that sequence (0 .. n_slots - 1); valid: bool ``[R, T]``, the prefix
    positions it sees (those up to where it branches off); generated_keys,
    generated_values: ``[R, nh, j, hs]`` of the j tokens it has generated since (j may be 0).
    """
    keys: torch.Tensor
    values: torch.Tensor
    rows: torch.Tensor
    slots: torch.Tensor
    n_slots: int
    valid: torch.Tensor
    generated_keys: torch.Tensor
    generated_values: torch.Tensor


_ATTENTION_HOOKS = ("q", "k", "v", "z", "attn_scores", "pattern")
_MLP_HOOKS = ("pre", "post")
_TL_ALIASES = {"attn": "pattern", "attn_logits": "attn_scores"}


def act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """The full hook name TransformerLens's ``utils.get_act_name`` gives: the block index
    ``layer`` counts blocks from 0, as in ``cache["resid_post", 3]``.

    >>> act_name("resid_post", 3), act_name("pattern", 0), act_name("post", 1)
    ('blocks.3.hook_resid_post', 'blocks.0.attn.hook_pattern', 'blocks.1.mlp.hook_post')
    >>> act_name("scale", 2, "ln1"), act_name("embed"), act_name("normalized", None, "ln_final")
    ('blocks.2.ln1.hook_scale', 'hook_embed', 'ln_final.hook_normalized')
    """
    if not isinstance(name, str) or not name:
        raise MothelloError(f"act_name({name!r}): expected a hook name such as 'resid_post'")
    if layer is not None:
        layer = check_int("layer", layer, least=0, error=MothelloError)
    if layer_type is not None and not isinstance(layer_type, str):
        raise MothelloError(f"layer_type={layer_type!r}: expected 'ln1', 'ln2' or None")
    name = _TL_ALIASES.get(name, name)
    if layer is None:
        return f"{layer_type}.hook_{name}" if layer_type else f"hook_{name}"
    if name in _ATTENTION_HOOKS:
        return f"blocks.{layer}.attn.hook_{name}"
    if name in _MLP_HOOKS:
        return f"blocks.{layer}.mlp.hook_{name}"
    if name in ("scale", "normalized"):
        if layer_type not in ("ln1", "ln2"):
            raise MothelloError(f"act_name({name!r}, {layer}): expected layer_type 'ln1' or "
                                f"'ln2' (the LayerNorm before attention or the MLP), got "
                                f"{layer_type!r}")
        return f"blocks.{layer}.{layer_type}.hook_{name}"
    return f"blocks.{layer}.hook_{name}"


class ActivationCache(dict):
    """Hook name -> activation tensor. ``cache["resid_post", 3]`` is short for
    ``cache["blocks.3.hook_resid_post"]`` (TransformerLens's keys, see `act_name`);
    `stack` gathers one hook over layers."""

    def __getitem__(self, key):
        if isinstance(key, tuple):
            key = act_name(*key)
        return super().__getitem__(key)

    def stack(self, name: str, layer_type: str | None = None) -> torch.Tensor:
        """``[n_layers, ...]``: ``act_name(name, l, layer_type)`` for every cached block l
        (``cache.stack("resid_post")``: ``[n_layers, batch, T, d_model]``)."""
        layers = sorted(int(m.group(1)) for k in self
                        if (m := re.fullmatch(r"blocks\.(\d+)\..+", k))
                        and act_name(name, int(m.group(1)), layer_type) == k)
        if not layers:
            raise KeyError(f"no {act_name(name, 'L', layer_type)} in the cache for any "
                           f"block L; cached: {sorted(self)}")
        return torch.stack([self[name, layer, layer_type] for layer in layers])


NamesFilter = None | str | Iterable[str] | Callable[[str], bool]


def _hooked(fn, activation: torch.Tensor, hook) -> torch.Tensor | None:
    """A hook function's result: None (the activation unchanged) or a replacement tensor."""
    out = fn(activation, hook)
    if out is not None and not isinstance(out, torch.Tensor):
        raise MothelloError(f"the hook function on {hook.name!r} returned "
                            f"{type(out).__name__}: expected None or a tensor of the "
                            "activation's shape")
    return out


def _check_token_tensor(name: str, values, dtypes=(torch.int64, torch.int32)) -> None:
    """`MothelloError` unless `values` is a tensor of one of the integer `dtypes`."""
    if not isinstance(values, torch.Tensor):
        raise MothelloError(f"{name}={type(values).__name__}: expected an integer torch tensor "
                            "[batch, positions] (torch.as_tensor(...) converts an array)")
    if values.dtype not in dtypes:
        raise MothelloError(f"{name} of dtype {values.dtype}: expected torch.int64 token ids")


class GPT(nn.Module):
    """GPT-2-style decoder. ``model(tokens, targets=None) -> (logits, loss | None)``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise MothelloError(f"config={config!r}: expected a GPTConfig (GPTConfig.from_dict "
                                "reads a dict)")
        d, L = config.d_model, config.n_layers   # float32 weights, before any is made
        n_weights = L * (4 * d * d + 2 * d * config.d_mlp) \
            + d * (2 * config.vocab_size + config.context_length)
        check_fits_in_memory(f"a GPT of {n_weights:,} float32 weights", 4 * n_weights,
                             error=MothelloError)
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.hook_embed = HookPoint()
        self.pos_embed = nn.Embedding(config.context_length, config.d_model)
        self.hook_pos_embed = HookPoint()
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_final = LayerNorm(config.d_model)
        self.unembed = nn.Linear(config.d_model, config.vocab_size)  # untied from `embed`
        self.register_buffer("positions", torch.arange(config.context_length), persistent=False)
        self.reset_parameters()
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02) weights, zero biases, residual output
        projections scaled by 1/sqrt(2 n_layers)."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 1:
                nn.init.ones_(p)
            else:
                std = 0.02 / math.sqrt(2 * self.config.n_layers) if name.endswith(
                    "proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    @property
    def hook_names(self) -> list[str]:
        """Every hook point's name, in the order of the forward pass."""
        return [name for name, m in self.named_modules() if isinstance(m, HookPoint)]

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens: int64 [B, T] (T <= context_length); targets: int64 [B, T] (-100 ignored).

        Returns logits float [B, T, vocab_size] and the mean cross-entropy over the
        targets that are not -100 (None without targets).
        """
        self._check_input(tokens)
        T = tokens.shape[-1]
        if targets is not None:
            _check_token_tensor("targets", targets, (torch.int64,))
            if targets.shape != tokens.shape:
                raise MothelloError(f"targets have shape {tuple(targets.shape)}; expected the "
                                    f"tokens' shape {tuple(tokens.shape)}")
        self._check_tokens(tokens, targets)
        x = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(
            self.positions[:T]).expand(tokens.shape[0], T, -1))   # [B, T, d], as in TL
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        logits = self.unembed(self.ln_final(x))  # (B, T, vocab)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The forward pass over tokens int64 ``[B, T]`` (eval mode: no dropout), keeping
        every layer's keys and values for `extend`: (logits ``[B, T, vocab]``, keys and
        values, a ``[B, nh, T, hs]`` tensor per layer)."""
        self._check_input(tokens)
        self._check_tokens(tokens)
        positions = self.positions[:tokens.shape[1]].expand(tokens.shape[0], -1)
        logits, keys, values = self._forward_cached(tokens, positions, [None] * len(self.blocks))
        return logits, keys, values

    @torch.no_grad()
    def extend(self, tokens: torch.Tensor, positions: torch.Tensor, keys: list[torch.Tensor],
               values: list[torch.Tensor], rows: torch.Tensor, valid: torch.Tensor,
               generated: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
               ) -> tuple[torch.Tensor, tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """Continue R sequences by one token each without recomputing their prefixes:
        tokens, positions int64 ``[R, 1]``; continuation r branches off prefix row
        ``rows[r]`` of `prefill`'s `keys` and `values`, seeing its positions where
        ``valid[r]`` (bool ``[R, T]``) and the tokens it generated before (`generated`:
        per layer keys and values ``[R, nh, j, hs]``, as the previous `extend` returned
        them; None for the first). Returns (logits ``[R, 1, vocab]``, `generated` with
        this token's keys and values appended): the logits a full forward pass over the
        prefix and the generated tokens gives at the last position."""
        if generated is None:
            empty = [k.new_zeros(len(rows), k.shape[1], 0, k.shape[3]) for k in keys]
            generated = (empty, empty)
        slots = _slots(rows)
        n_slots = int(slots.max()) + 1 if len(slots) else 1
        past = [LayerPast(k, v, rows, slots, n_slots, valid, gk, gv) for k, v, gk, gv
                in zip(keys, values, *generated)]
        logits, new_keys, new_values = self._forward_cached(tokens, positions, past)
        return logits, ([torch.cat([g, k], 2) for g, k in zip(generated[0], new_keys)],
                        [torch.cat([g, v], 2) for g, v in zip(generated[1], new_values)])

    def _forward_cached(self, tokens: torch.Tensor, positions: torch.Tensor,
                        past: list[LayerPast | None]):
        if self.training:
            raise MothelloError("prefill/extend run in eval mode only: call model.eval()")
        if int(positions.max()) >= self.config.context_length:
            raise MothelloError(f"position {int(positions.max())} is past this model's "
                                f"context_length {self.config.context_length}")
        self._check_tokens(tokens)
        x = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(positions))
        keys, values = [], []
        for block, layer_past in zip(self.blocks, past):
            x, k, v = block.forward_cached(x, layer_past)
            keys.append(k)
            values.append(v)
        return self.unembed(self.ln_final(x)), keys, values

    def to_transformer_lens(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(state dict, config) for TransformerLens's HookedTransformer (see
        `to_transformer_lens`)."""
        return to_transformer_lens(self)

    def _check_input(self, tokens) -> None:
        """`MothelloError` unless `tokens` is an integer tensor [batch, positions], neither
        empty, that fits the context and the vocabulary."""
        _check_token_tensor("tokens", tokens)
        if tokens.ndim != 2 or 0 in tokens.shape:
            raise MothelloError(f"tokens have shape {tuple(tokens.shape)}; expected [batch, "
                                "positions], neither empty (a single sequence is tokens[None])")
        if tokens.shape[-1] > self.config.context_length:
            raise MothelloError(f"tokens have length {tokens.shape[-1]}; this model's "
                                f"context_length is {self.config.context_length}")

    def _check_tokens(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> None:
        """`MothelloError` naming a token (or target: -100 or a token) outside the
        vocabulary, where reading numbers back costs nothing that matters: on the CPU, or
        out of training (a GPU training step would wait for it; the corpus writes only
        tokens of the language set), and never under torch.compile."""
        if torch.compiler.is_compiling() or not tokens.numel() \
                or (self.training and tokens.device.type != "cpu"):
            return
        for name, values in (("token", tokens), ("target", targets)):
            if values is None:
                continue
            if name == "target":
                values = values[values != -100]
                if not values.numel():
                    continue
            low, high = int(values.min()), int(values.max())
            if low < 0 or high >= self.config.vocab_size:
                bad = low if low < 0 else high
                raise MothelloError(f"{name} {bad} is outside this model's vocabulary "
                                    f"0..{self.config.vocab_size - 1}"
                                    + (" (or -100, ignored)" if name == "target" else ""))

    def _hook_points(self, names_filter: NamesFilter) -> dict[str, HookPoint]:
        points = {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}
        if names_filter is None:
            return points
        if callable(names_filter):
            return {n: m for n, m in points.items() if names_filter(n)}
        if not isinstance(names_filter, (str, Iterable)) or isinstance(names_filter, bytes):
            raise MothelloError(f"names_filter={names_filter!r}: expected a hook name, a glob "
                                "pattern, a list of them or a predicate on names")
        patterns = [names_filter] if isinstance(names_filter, str) else list(names_filter)
        chosen = {}
        for pattern in patterns:
            if not isinstance(pattern, str):
                raise MothelloError(f"names_filter item {pattern!r}: expected a hook name or "
                                    "glob pattern (a str)")
            matched = {n: m for n, m in points.items() if fnmatch.fnmatchcase(n, pattern)}
            if not matched:
                raise MothelloError(f"names_filter {pattern!r} matches no hook point; "
                                    f"expected one of {list(points)} (or a glob pattern)")
            chosen.update(matched)
        return {n: m for n, m in points.items() if n in chosen}

    def run_with_hooks(self, tokens: torch.Tensor, fwd_hooks: Iterable[tuple], *,
                       targets: torch.Tensor | None = None):
        """Forward pass with ``(name, fn)`` hooks attached; ``fn(activation, hook)`` (hook:
        the `HookPoint`, with ``hook.name``, as in TransformerLens) may return a
        replacement tensor. ``name`` may be a glob pattern."""
        if isinstance(fwd_hooks, (str, bytes)) or not isinstance(fwd_hooks, Iterable):
            raise MothelloError(f"fwd_hooks={fwd_hooks!r}: expected a list of (name, function)")
        fwd_hooks = list(fwd_hooks)
        for hook in fwd_hooks:
            if not (isinstance(hook, tuple) and len(hook) == 2 and callable(hook[1])):
                raise MothelloError(f"hook {hook!r}: expected a (name, function) pair, the "
                                    "function taking (activation, hook)")
        handles = []
        try:
            for pattern, fn in fwd_hooks:
                for point in self._hook_points(pattern).values():
                    handles.append(point.register_forward_hook(
                        lambda module, _inp, out, fn=fn: _hooked(fn, out, module)))
            # _call_impl, not self(): after `model.compile()` the compiled call would skip
            # hooks added later (dynamo does not guard on them)
            return self._call_impl(tokens, targets)
        finally:
            for handle in handles:
                handle.remove()

    def run_with_cache(self, tokens: torch.Tensor, names_filter: NamesFilter = None, *,
                       detach: bool = True) -> tuple[torch.Tensor, ActivationCache]:
        """Forward pass that also returns the activations at the hook points chosen by
        `names_filter` (None: all; a name or glob pattern; a list of them; or a
        predicate on names). tokens: int64 [B, T] -> (logits [B, T, vocab], cache
        name -> activation in TransformerLens's shape: ``[B, T, d_model]`` for the residual
        stream, ``hook_pos_embed`` and the outputs; see the module docstring)."""
        cache = ActivationCache()

        def save(activation: torch.Tensor, hook: HookPoint) -> None:
            cache[hook.name] = activation.detach() if detach else activation

        names = list(self._hook_points(names_filter))
        logits, _ = self.run_with_hooks(tokens, [(name, save) for name in names])
        return logits, ActivationCache((name, cache[name]) for name in names)

    @classmethod
    def from_transformer_lens(cls, state_dict: Mapping[str, torch.Tensor], *,
                              n_heads: int | None = None, dropout: float = 0.0) -> GPT:
        """Build a model from a TransformerLens state dict (e.g. the public Othello-GPT
        checkpoint: vocab 61, context 59, 8 layers, 8 heads, d_model 512).

        Keys: ``embed.W_E [vocab, d]``, ``pos_embed.W_pos [ctx, d]``,
        ``blocks.{l}.ln1.w/b``, ``blocks.{l}.attn.W_Q/W_K/W_V [heads, d, d_head]``,
        ``b_Q/b_K/b_V [heads, d_head]``, ``W_O [heads, d_head, d]``, ``b_O [d]``,
        ``blocks.{l}.ln2.w/b``, ``blocks.{l}.mlp.W_in [d, d_mlp]``, ``b_in``,
        ``W_out [d_mlp, d]``, ``b_out``, ``ln_final.w/b``, ``unembed.W_U [d, vocab]``,
        ``b_U``. Missing LayerNorm weights (a folded checkpoint) load as w=1, b=0;
        buffers such as ``attn.mask`` and ``attn.IGNORE`` are ignored.

        The Othello-GPT vocabulary (pad 0, the 60 playable squares in ascending order
        as 1..60) is this toolkit's ``LanguageSet.from_spec("atomic")``; that set
        encodes 60 tokens a game, of which the model reads the first 59.
        """
        if not isinstance(state_dict, Mapping):
            raise CheckpointError(f"state_dict={type(state_dict).__name__}: expected a "
                                  "TransformerLens state dict (name -> tensor)")
        try:
            sd = {k: torch.as_tensor(v).detach().float() for k, v in state_dict.items()}
        except (TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"TransformerLens state dict holds a value that is not a "
                                  f"tensor of numbers ({exc})") from None
        ndims = {"embed.W_E": 2, "pos_embed.W_pos": 2, "unembed.W_U": 2,
                 "blocks.0.attn.W_Q": 3, "blocks.0.mlp.W_in": 2}

        def get(key: str) -> torch.Tensor:
            if key not in sd:
                raise CheckpointError(f"TransformerLens state dict has no key {key!r}")
            if key in ndims and sd[key].ndim != ndims[key]:
                raise CheckpointError(f"{key} has shape {tuple(sd[key].shape)}: expected "
                                      f"{ndims[key]} dimensions")
            return sd[key]

        W_E, W_pos, W_U = get("embed.W_E"), get("pos_embed.W_pos"), get("unembed.W_U")
        n_layers = 1 + max((int(m.group(1)) for k in sd
                            if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
        W_Q0 = get("blocks.0.attn.W_Q")
        heads = W_Q0.shape[0]
        if n_heads is not None and n_heads != heads:
            raise CheckpointError(f"n_heads={n_heads} but blocks.0.attn.W_Q has shape "
                                  f"{tuple(W_Q0.shape)} ([n_heads, d_model, d_head])")
        if W_U.shape[1] != W_E.shape[0]:
            raise CheckpointError(f"unembed.W_U has {W_U.shape[1]} outputs but embed.W_E has "
                                  f"{W_E.shape[0]} tokens; expected the same vocabulary")
        config = GPTConfig(vocab_size=W_E.shape[0], context_length=W_pos.shape[0],
                           n_layers=n_layers, n_heads=heads, d_model=W_E.shape[1],
                           d_mlp=get("blocks.0.mlp.W_in").shape[1], dropout=dropout)
        d = config.d_model

        def attn_weight(key: str, shape: tuple[int, ...]) -> torch.Tensor:
            w = get(key)
            if tuple(w.shape) != shape:
                raise CheckpointError(f"{key} has shape {tuple(w.shape)}; expected {shape} "
                                      f"(this GPT needs d_head = d_model / n_heads = {d // heads})")
            return w

        ours = {"embed.weight": W_E, "pos_embed.weight": W_pos, "unembed.weight": W_U.T,
                "unembed.bias": sd.get("unembed.b_U", torch.zeros(W_E.shape[0]))}

        def layer_norm(tl: str, name: str) -> None:
            ours[f"{name}.weight"] = sd.get(f"{tl}.w", torch.ones(d))
            ours[f"{name}.bias"] = sd.get(f"{tl}.b", torch.zeros(d))

        layer_norm("ln_final", "ln_final")
        for l in range(n_layers):
            tl, me = f"blocks.{l}", f"blocks.{l}"
            layer_norm(f"{tl}.ln1", f"{me}.ln1")
            layer_norm(f"{tl}.ln2", f"{me}.ln2")
            # W_X [h, d, dh] -> Linear rows h*dh + j
            ours[f"{me}.attn.qkv.weight"] = torch.cat(
                [attn_weight(f"{tl}.attn.W_{x}", (heads, d, d // heads)).permute(0, 2, 1)
                 .reshape(d, d) for x in "QKV"])
            try:
                ours[f"{me}.attn.qkv.bias"] = torch.cat(
                    [sd.get(f"{tl}.attn.b_{x}", torch.zeros(d)).reshape(d) for x in "QKV"])
            except RuntimeError:
                raise CheckpointError(f"{tl}.attn.b_Q/b_K/b_V: expected [n_heads, d_head] = "
                                      f"{d} values each") from None
            ours[f"{me}.attn.proj.weight"] = attn_weight(  # [d, h*dh]
                f"{tl}.attn.W_O", (heads, d // heads, d)).reshape(d, d).T
            ours[f"{me}.attn.proj.bias"] = sd.get(f"{tl}.attn.b_O", torch.zeros(d))
            ours[f"{me}.mlp.fc.weight"] = get(f"{tl}.mlp.W_in").T
            ours[f"{me}.mlp.fc.bias"] = sd.get(f"{tl}.mlp.b_in", torch.zeros(config.d_mlp))
            ours[f"{me}.mlp.proj.weight"] = get(f"{tl}.mlp.W_out").T
            ours[f"{me}.mlp.proj.bias"] = sd.get(f"{tl}.mlp.b_out", torch.zeros(d))
        model = cls(config)
        try:
            model.load_state_dict({k: v.contiguous() for k, v in ours.items()})
        except RuntimeError as exc:
            raise CheckpointError(f"TransformerLens state dict does not fit {config}: "
                                  f"{exc}") from None
        return model.eval()


def to_transformer_lens(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """`model` (a `GPT`) as TransformerLens holds it: (state dict, config), the inverse of
    `GPT.from_transformer_lens`. The config's fields are `HookedTransformerConfig`'s
    (``normalization_type="LN"``, ``act_fn="gelu"``, standard positions); the state dict
    has TL's names and shapes, and the attention buffers TL registers (``attn.mask``, the
    causal mask, and ``attn.IGNORE``), so that ``HookedTransformer(cfg)`` loads it with
    ``load_state_dict(sd, strict=True)`` (TransformerLens 2.x and 3.x name these the same).
    """
    gpt = unwrap(model)
    config = gpt.config
    d, heads, dh = config.d_model, config.n_heads, config.d_head
    sd = {name: tensor.detach().clone().float() for name, tensor in gpt.state_dict().items()}
    ours = {"embed.W_E": sd["embed.weight"], "pos_embed.W_pos": sd["pos_embed.weight"],
            "unembed.W_U": sd["unembed.weight"].T, "unembed.b_U": sd["unembed.bias"],
            "ln_final.w": sd["ln_final.weight"], "ln_final.b": sd["ln_final.bias"]}
    mask = torch.ones(config.context_length, config.context_length, dtype=torch.bool).tril()
    for l in range(config.n_layers):
        p = f"blocks.{l}."
        for ln in ("ln1", "ln2"):
            ours[p + f"{ln}.w"], ours[p + f"{ln}.b"] = sd[p + f"{ln}.weight"], sd[p + f"{ln}.bias"]
        weights = sd[p + "attn.qkv.weight"].reshape(3, heads, dh, d)   # rows h*dh + j
        biases = sd[p + "attn.qkv.bias"].reshape(3, heads, dh)
        for i, x in enumerate("QKV"):
            ours[p + f"attn.W_{x}"] = weights[i].permute(0, 2, 1)       # [heads, d, dh]
            ours[p + f"attn.b_{x}"] = biases[i]
        ours[p + "attn.W_O"] = sd[p + "attn.proj.weight"].T.reshape(heads, dh, d)
        ours[p + "attn.b_O"] = sd[p + "attn.proj.bias"]
        ours[p + "attn.mask"] = mask.clone()
        ours[p + "attn.IGNORE"] = torch.tensor(float("-inf"))
        ours[p + "mlp.W_in"], ours[p + "mlp.b_in"] = sd[p + "mlp.fc.weight"].T, sd[p + "mlp.fc.bias"]
        ours[p + "mlp.W_out"] = sd[p + "mlp.proj.weight"].T
        ours[p + "mlp.b_out"] = sd[p + "mlp.proj.bias"]
    cfg = {"n_layers": config.n_layers, "d_model": d, "n_ctx": config.context_length,
           "d_head": dh, "n_heads": heads, "d_mlp": config.d_mlp, "d_vocab": config.vocab_size,
           "d_vocab_out": config.vocab_size, "act_fn": "gelu", "normalization_type": "LN",
           "positional_embedding_type": "standard", "attn_only": False, "eps": 1e-5,
           "original_architecture": "mothello_fast.GPT"}
    return {k: v.contiguous() for k, v in ours.items()}, cfg


def _slots(rows: torch.Tensor) -> torch.Tensor:
    """int64 [R]: the number of each entry of `rows` among the entries of its value (0 for
    the first 5 in ``[5, 3, 5]``, 0 for the 3, 1 for the second 5)."""
    if len(rows) == 0:
        return rows.clone()
    order = torch.argsort(rows, stable=True)
    sorted_rows = rows[order]
    first = torch.searchsorted(sorted_rows, sorted_rows)   # where each value's run starts
    slots = torch.empty_like(rows)
    slots[order] = torch.arange(len(rows), device=rows.device) - first
    return slots


def unwrap(model: nn.Module) -> GPT:
    """The `GPT` inside a compiled (``_orig_mod``) and/or DDP (``module``) wrapper."""
    while not isinstance(model, GPT):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if inner is None:
            raise MothelloError(f"expected a GPT (possibly compiled or DDP-wrapped); got "
                                f"{type(model).__name__}")
        model = inner
    return model
