"""GPT: shapes, loss, hook names, cache contents, TransformerLens loader, torch.compile.

The oracle is `tl_forward`, a TransformerLens-style forward pass written here with
einsums over a TransformerLens-format state dict (W_Q ``[heads, d_model, d_head]``,
...): a model loaded with `GPT.from_transformer_lens` must reproduce its logits and
its residual stream at every layer.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mothello_fast.devices import resolve_device
from mothello_fast.errors import CheckpointError, MothelloError
from mothello_fast.model import GPT, GPTConfig, flops_per_token

VOCAB, CTX, LAYERS, HEADS, D, D_MLP = 61, 59, 2, 4, 32, 64


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tl_state_dict(seed=0, vocab=VOCAB, ctx=CTX, layers=LAYERS, heads=HEADS, d=D, d_mlp=D_MLP):
    """A random state dict with TransformerLens's key names and shapes (Othello-GPT style)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    dh = d // heads
    sd = {"embed.W_E": r(vocab, d, scale=1.0), "pos_embed.W_pos": r(ctx, d, scale=0.5),
          "unembed.W_U": r(d, vocab), "unembed.b_U": r(vocab),
          "ln_final.w": 1 + r(d), "ln_final.b": r(d)}
    for l in range(layers):
        p = f"blocks.{l}."
        sd.update({p + "ln1.w": 1 + r(d), p + "ln1.b": r(d), p + "ln2.w": 1 + r(d),
                   p + "ln2.b": r(d),
                   p + "attn.W_Q": r(heads, d, dh), p + "attn.W_K": r(heads, d, dh),
                   p + "attn.W_V": r(heads, d, dh), p + "attn.W_O": r(heads, dh, d),
                   p + "attn.b_Q": r(heads, dh), p + "attn.b_K": r(heads, dh),
                   p + "attn.b_V": r(heads, dh), p + "attn.b_O": r(d),
                   p + "attn.mask": torch.ones(ctx, ctx).tril().bool(),
                   p + "attn.IGNORE": torch.tensor(-1e5),
                   p + "mlp.W_in": r(d, d_mlp), p + "mlp.b_in": r(d_mlp),
                   p + "mlp.W_out": r(d_mlp, d), p + "mlp.b_out": r(d)})
    return sd


def tl_forward(sd, tokens):
    """Independent forward pass over a TL state dict, written as TransformerLens (>= 3)
    computes and hooks it: (logits, {hook name: activation in TL's shape})."""
    acts = {}

    def ln(x, w, b, name):   # TL >= 3: hook_scale, then hook_normalized before w and b
        x = x - x.mean(-1, keepdim=True)
        acts[f"{name}.hook_scale"] = scale = (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
        acts[f"{name}.hook_normalized"] = x / scale
        return x / scale * w + b

    B, T = tokens.shape
    acts["hook_embed"] = sd["embed.W_E"][tokens]
    acts["hook_pos_embed"] = sd["pos_embed.W_pos"][:T].expand(B, T, -1)
    x = acts["hook_embed"] + acts["hook_pos_embed"]
    l = 0
    while f"blocks.{l}.attn.W_Q" in sd:
        p = f"blocks.{l}."
        acts[p + "hook_resid_pre"] = x
        h = ln(x, sd[p + "ln1.w"], sd[p + "ln1.b"], p + "ln1")
        for n in "QKV":   # [B, T, heads, d_head]
            acts[p + f"attn.hook_{n.lower()}"] = torch.einsum(
                "btd,hde->bthe", h, sd[p + f"attn.W_{n}"]) + sd[p + f"attn.b_{n}"]
        q, k, v = (acts[p + f"attn.hook_{n}"].transpose(1, 2) for n in "qkv")
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
        acts[p + "attn.hook_attn_scores"] = scores
        acts[p + "attn.hook_pattern"] = pattern = scores.softmax(-1)
        acts[p + "attn.hook_z"] = z = (pattern @ v).transpose(1, 2)   # [B, T, heads, d_head]
        attn_out = torch.einsum("bthe,hed->btd", z, sd[p + "attn.W_O"]) + sd[p + "attn.b_O"]
        acts[p + "hook_attn_out"] = attn_out
        x = x + attn_out
        acts[p + "hook_resid_mid"] = x
        h = ln(x, sd[p + "ln2.w"], sd[p + "ln2.b"], p + "ln2")
        acts[p + "mlp.hook_pre"] = pre = h @ sd[p + "mlp.W_in"] + sd[p + "mlp.b_in"]
        acts[p + "mlp.hook_post"] = post = F.gelu(pre)
        mlp_out = post @ sd[p + "mlp.W_out"] + sd[p + "mlp.b_out"]
        acts[p + "hook_mlp_out"] = mlp_out
        x = x + mlp_out
        acts[p + "hook_resid_post"] = x
        l += 1
    x = ln(x, sd["ln_final.w"], sd["ln_final.b"], "ln_final")
    return x @ sd["unembed.W_U"] + sd["unembed.b_U"], acts


def small_config(**kw):
    return GPTConfig(**{"vocab_size": VOCAB, "context_length": CTX, "n_layers": LAYERS,
                        "n_heads": HEADS, "d_model": D, "d_mlp": D_MLP, **kw})


def tokens(batch=3, T=CTX, seed=1):
    return torch.randint(1, VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


def test_logits_have_shape_batch_positions_vocab_and_no_loss_without_targets():
    model = GPT(small_config()).eval()
    logits, loss = model(tokens(batch=3, T=17))
    assert logits.shape == (3, 17, VOCAB)
    assert loss is None


def test_loss_is_mean_cross_entropy_over_targets_not_minus_100():
    model = GPT(small_config()).eval()
    x = tokens()
    targets = tokens(seed=2)
    targets[:, ::3] = -100
    logits, loss = model(x, targets)
    logp = logits.log_softmax(-1)
    keep = targets != -100
    expected = -logp[keep].gather(-1, targets[keep][:, None]).mean()
    torch.testing.assert_close(loss, expected)


def test_targets_of_another_shape_than_the_tokens_are_refused():
    # transposed targets have as many entries: flattened, they would give a wrong loss silently
    with pytest.raises(MothelloError, match=r"targets have shape \(59, 3\); expected the "
                                            r"tokens' shape \(3, 59\)"):
        GPT(small_config()).eval()(tokens(), tokens(seed=2).T)


def test_tokens_longer_than_context_are_refused():
    model = GPT(small_config())
    with pytest.raises(MothelloError, match="context_length is 59"):
        model(torch.zeros(1, CTX + 1, dtype=torch.long))


def test_hook_names_follow_transformer_lens_in_forward_order():
    names = GPT(small_config()).hook_names
    expected = ["hook_embed", "hook_pos_embed"]
    for l in range(LAYERS):
        p = f"blocks.{l}."
        expected += [p + "hook_resid_pre", p + "ln1.hook_scale", p + "ln1.hook_normalized",
                     *(p + f"attn.hook_{n}" for n in ("q", "k", "v", "attn_scores", "pattern",
                                                       "z")),
                     p + "hook_attn_out", p + "hook_resid_mid", p + "ln2.hook_scale",
                     p + "ln2.hook_normalized", p + "mlp.hook_pre", p + "mlp.hook_post",
                     p + "hook_mlp_out", p + "hook_resid_post"]
    assert names == expected + ["ln_final.hook_scale", "ln_final.hook_normalized"]


def test_transformer_lens_loader_reproduces_independent_logits():
    sd = tl_state_dict()
    model = GPT.from_transformer_lens(sd)
    assert (model.config.vocab_size, model.config.context_length, model.config.n_layers,
            model.config.n_heads, model.config.d_model, model.config.d_mlp) == \
        (VOCAB, CTX, LAYERS, HEADS, D, D_MLP)
    x = tokens()
    expected, _ = tl_forward(sd, x)
    torch.testing.assert_close(model(x)[0], expected, atol=1e-4, rtol=1e-4)


def test_transformer_lens_loader_treats_missing_layernorm_weights_as_identity():
    sd = {k: v for k, v in tl_state_dict().items() if not k.endswith((".w", ".b"))
          or not k.split(".")[-2].startswith("ln")}
    folded = dict(sd)
    d = sd["embed.W_E"].shape[1]
    for name in ["ln_final"] + [f"blocks.{l}.ln{i}" for l in range(LAYERS) for i in (1, 2)]:
        folded[f"{name}.w"], folded[f"{name}.b"] = torch.ones(d), torch.zeros(d)
    x = tokens()
    expected, _ = tl_forward(folded, x)
    torch.testing.assert_close(GPT.from_transformer_lens(sd)(x)[0], expected, atol=1e-4,
                               rtol=1e-4)


def test_transformer_lens_loader_refuses_wrong_head_count():
    with pytest.raises(CheckpointError, match="n_heads=8"):
        GPT.from_transformer_lens(tl_state_dict(), n_heads=8)


def test_transformer_lens_loader_refuses_d_head_other_than_d_model_over_n_heads():
    sd = tl_state_dict()
    for l in range(LAYERS):   # 4 heads of 16: 64 wide, where d_model is 32
        for n in "QKV":
            sd[f"blocks.{l}.attn.W_{n}"] = torch.zeros(HEADS, D, 16)
            sd[f"blocks.{l}.attn.b_{n}"] = torch.zeros(HEADS, 16)
        sd[f"blocks.{l}.attn.W_O"] = torch.zeros(HEADS, 16, D)
    with pytest.raises(CheckpointError, match=r"blocks.0.attn.W_Q has shape \(4, 32, 16\); "
                                              r"expected \(4, 32, 8\)"):
        GPT.from_transformer_lens(sd)


def test_cache_holds_the_residual_stream_of_every_layer():
    sd = tl_state_dict()
    model = GPT.from_transformer_lens(sd)
    x = tokens()
    logits, cache = model.run_with_cache(x)
    _, expected = tl_forward(sd, x)
    assert list(cache) == model.hook_names == list(expected)
    for name, value in expected.items():   # every hook, in TransformerLens's shape
        assert cache[name].shape == value.shape, name
        torch.testing.assert_close(cache[name], value, atol=1e-4, rtol=1e-4, msg=name)
    torch.testing.assert_close(logits, model(x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("names_filter, expected", [
    ("blocks.1.hook_resid_post", ["blocks.1.hook_resid_post"]),
    ("blocks.*.hook_resid_mid", ["blocks.0.hook_resid_mid", "blocks.1.hook_resid_mid"]),
    (["ln_final.hook_normalized", "hook_embed"], ["hook_embed", "ln_final.hook_normalized"]),
    (lambda name: name.endswith("mlp_out"), ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]),
])
def test_names_filter_selects_cached_hooks(names_filter, expected):
    _, cache = GPT(small_config()).eval().run_with_cache(tokens(), names_filter=names_filter)
    assert list(cache) == expected


def test_names_filter_matching_no_hook_is_refused():
    with pytest.raises(MothelloError, match="matches no hook point"):
        GPT(small_config()).run_with_cache(tokens(), names_filter="blocks.9.hook_resid_post")


def test_run_with_cache_leaves_no_hooks_attached():
    model = GPT(small_config()).eval()
    model.run_with_cache(tokens())
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_cache_tuple_keys_and_stack_over_layers():
    model = GPT(small_config()).eval()
    _, cache = model.run_with_cache(tokens(), names_filter="blocks.*.hook_resid_post")
    stacked = cache.stack("resid_post")
    assert stacked.shape == (LAYERS, 3, CTX, D)
    for l in range(LAYERS):
        assert torch.equal(stacked[l], cache["resid_post", l])
        assert torch.equal(cache["resid_post", l], cache[f"blocks.{l}.hook_resid_post"])


def test_hook_return_value_replaces_the_activation():
    model = GPT(small_config()).eval()
    x = tokens()
    zeroed, _ = model.run_with_hooks(x, [("blocks.*.hook_attn_out",
                                          lambda act, name: torch.zeros_like(act))])
    # with every attention output zeroed, each position is an MLP-only stack on its embedding
    h = model.embed.weight[x] + model.pos_embed.weight[:CTX]
    for block in model.blocks:
        h = h + block.mlp(block.ln2(h))
    torch.testing.assert_close(zeroed, model.unembed(model.ln_final(h)), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(zeroed, model(x)[0], atol=1e-3)


def test_hooks_apply_to_a_model_compiled_in_place():
    # dynamo does not guard on hooks added after compiling: they must run eagerly
    model = GPT(small_config(n_layers=1)).eval()
    x = tokens()
    zero_attn = [("blocks.0.hook_attn_out", lambda act, name: torch.zeros_like(act))]
    expected, _ = model.run_with_hooks(x, zero_attn)
    plain = model(x)[0]
    model.compile(backend="eager")
    torch.testing.assert_close(model(x)[0], plain)   # compiled without hooks
    torch.testing.assert_close(model.run_with_hooks(x, zero_attn)[0], expected)
    _, cache = model.run_with_cache(x, names_filter="blocks.0.hook_resid_post")
    assert list(cache) == ["blocks.0.hook_resid_post"]
    torch.testing.assert_close(model(x)[0], plain)


def test_dropout_is_off_in_eval_mode_and_on_in_train_mode():
    model = GPT(small_config(dropout=0.5))
    x = tokens()
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])


def test_flops_per_token_counts_linear_weights_and_attention():
    config = GPTConfig(vocab_size=61, context_length=59)
    model = GPT(config)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention = 12 * config.n_layers * config.context_length * config.d_model
    assert flops_per_token(model.config) == 6 * linear + attention


def test_config_round_trips_through_dict():
    config = small_config(dropout=0.0, attention_backend="reference")
    assert GPTConfig.from_dict(config.to_dict()) == config


def test_config_rejects_width_not_divisible_by_heads():
    with pytest.raises(MothelloError, match="not divisible by n_heads=3"):
        GPTConfig(vocab_size=10, context_length=8, d_model=32, n_heads=3)


def test_config_rejects_unknown_attention_backend():
    with pytest.raises(MothelloError, match="GPTConfig.attention_backend='flash': expected one "
                                            "of 'auto', 'triton', 'sdpa', 'reference'"):
        small_config(attention_backend="flash")


def test_config_from_dict_names_missing_fields():
    # a ValueError (what checkpoint loading reports as an invalid config), not a TypeError
    with pytest.raises(MothelloError, match=r"GPTConfig: missing field\(s\) \['context_length'\]"):
        GPTConfig.from_dict({"vocab_size": 61})


def test_reference_attention_backend_gives_the_same_logits():
    sdpa = GPT(small_config(dropout=0.0)).eval()
    ref = GPT(small_config(dropout=0.0, attention_backend="reference")).eval()
    ref.load_state_dict(sdpa.state_dict())
    x = tokens()
    torch.testing.assert_close(ref(x)[0], sdpa(x)[0], atol=1e-5, rtol=1e-5)


def test_compiled_model_gives_eager_logits_and_loss():
    model = GPT(small_config(n_layers=1)).eval()
    compiled = torch.compile(model)
    x, targets = tokens(), tokens(seed=3)
    eager_logits, eager_loss = model(x, targets)
    logits, loss = compiled(x, targets)
    torch.testing.assert_close(logits, eager_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, eager_loss, atol=1e-5, rtol=1e-5)


def test_tokens_without_a_batch_dimension_are_refused():
    model = GPT(GPTConfig(vocab_size=10, context_length=8, n_layers=1, n_heads=2, d_model=32,
                          d_mlp=64))
    with pytest.raises(MothelloError, match=r"tokens have shape \(5,\); expected \[batch, "):
        model(torch.zeros(5, dtype=torch.long))


def test_unknown_device_name_is_refused():
    with pytest.raises(MothelloError, match=r"device='gpu': expected 'auto', 'cpu', 'cuda'"):
        resolve_device("gpu")


def test_cuda_device_the_machine_lacks_is_refused():
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(MothelloError, match=rf"device='{missing}': this machine has "
                                            rf"{torch.cuda.device_count()} CUDA device"):
        resolve_device(missing)


def _small_model(seed=0, **shape):
    torch.manual_seed(seed)
    config = dict(vocab_size=50, context_length=24, n_layers=2, n_heads=2, d_model=16, d_mlp=32)
    return GPT(GPTConfig(**{**config, **shape})).eval()


def test_prefill_is_the_forward_pass():
    model = _small_model()
    tokens = torch.randint(1, 50, (3, 24))
    logits, keys, values = model.prefill(tokens)
    torch.testing.assert_close(logits, model(tokens)[0])
    assert len(keys) == len(values) == 2 and keys[0].shape == (3, 2, 24, 8)


def test_extend_gives_the_logits_of_a_full_pass_over_the_branched_sequence():
    model = _small_model(seed=1)
    tokens = torch.randint(1, 50, (4, 24))
    _, keys, values = model.prefill(tokens)
    rows, branch = torch.tensor([2, 0, 2]), torch.tensor([5, 0, 20])
    valid = torch.arange(24)[None] <= branch[:, None]
    generated, fed = None, []
    for j in range(1, 4):
        new = torch.randint(1, 50, (3, 1))
        fed.append(new)
        logits, generated = model.extend(new, branch[:, None] + j, keys, values, rows=rows,
                                         valid=valid, generated=generated)
        for r in range(3):
            sequence = torch.cat([tokens[rows[r], :branch[r] + 1],
                                  *[f[r] for f in fed]])[None]
            torch.testing.assert_close(logits[r, 0], model(sequence)[0][0, -1])
    assert generated[0][0].shape == (3, 2, 3, 8)


def test_incremental_decoding_needs_eval_mode_and_stays_in_the_context():
    model = _small_model()
    tokens = torch.randint(1, 50, (1, 24))
    _, keys, values = model.prefill(tokens)
    with pytest.raises(MothelloError, match="position 24 is past"):
        model.extend(tokens[:, :1], torch.tensor([[24]]), keys, values, rows=torch.tensor([0]),
                     valid=torch.ones(1, 24, dtype=torch.bool))
    model.train()
    with pytest.raises(MothelloError, match="eval mode"):
        model.prefill(tokens)


# ---- TransformerLens parity --------------------------------------------------------

def test_hook_functions_get_the_hook_point_with_its_name_and_layer():
    model = GPT(small_config()).eval()
    seen = []
    model.run_with_hooks(tokens(), [("blocks.*.attn.hook_pattern",
                                     lambda act, hook: seen.append((hook.name, hook.layer())))])
    assert seen == [("blocks.0.attn.hook_pattern", 0), ("blocks.1.attn.hook_pattern", 1)]
    with pytest.raises(MothelloError, match="'hook_embed' belongs to no block"):
        model.hook_embed.layer()


def test_a_hook_on_pos_embed_indexes_positions_as_in_transformer_lens():
    # TL's hook_pos_embed is [batch, pos, d]: act[:, 5] is position 5 (here it was [pos, d])
    model = GPT(small_config()).eval()
    x = tokens()

    def zero_position_5(act, hook):
        act = act.clone()
        act[:, 5] = 0
        return act
    patched, _ = model.run_with_hooks(x, [("hook_pos_embed", zero_position_5)])
    plain, _ = model(x)
    torch.testing.assert_close(patched[:, :5], plain[:, :5])
    assert not torch.allclose(patched[:, 5], plain[:, 5])


def test_reading_inside_attention_and_layer_norm_leaves_the_outputs_as_they_are():
    model = GPT(small_config()).eval()
    x = tokens()
    inside = ["blocks.*.attn.hook_*", "blocks.*.ln*.hook_*", "ln_final.hook_*", "*.mlp.hook_*"]
    read, _ = model.run_with_hooks(x, [(name, lambda act, hook: act) for name in inside])
    torch.testing.assert_close(read, model(x)[0], atol=1e-5, rtol=1e-5)


def test_a_patched_pattern_changes_the_output_as_the_reference_computes_it():
    model = GPT(small_config(n_layers=1)).eval()
    x = tokens(batch=2, T=6)

    def attend_to_the_first_token(act, hook):
        pattern = torch.zeros_like(act)
        pattern[..., 0] = 1.0
        return pattern
    patched, _ = model.run_with_hooks(x, [("blocks.0.attn.hook_pattern",
                                           attend_to_the_first_token)])
    with torch.no_grad():   # every position reads the first token's value, in every head
        block = model.blocks[0]
        h = model.embed(x) + model.pos_embed.weight[:6]
        v = block.attn.qkv(block.ln1(h))[..., 2 * D:]                # [B, T, d]: heads' values
        h = h + block.attn.proj(v[:, :1].expand(-1, 6, -1))
        h = h + block.mlp(block.ln2(h))
        expected = model.unembed(model.ln_final(h))
    torch.testing.assert_close(patched, expected, atol=1e-5, rtol=1e-5)


def test_the_export_to_transformer_lens_round_trips():
    model = GPT(small_config()).eval()
    state_dict, cfg = model.to_transformer_lens()
    assert (cfg["n_layers"], cfg["d_head"], cfg["n_ctx"], cfg["d_vocab"]) == (LAYERS, D // HEADS,
                                                                            CTX, VOCAB)
    assert state_dict["blocks.0.attn.W_Q"].shape == (HEADS, D, D // HEADS)
    assert state_dict["blocks.0.attn.mask"].shape == (CTX, CTX)
    again = GPT.from_transformer_lens(state_dict)
    x = tokens()
    torch.testing.assert_close(again(x)[0], model(x)[0])
    # and the exported weights, run by the independent TL-style reference, give the logits
    torch.testing.assert_close(tl_forward(state_dict, x)[0], model(x)[0], atol=1e-4, rtol=1e-4)


def test_every_shared_hook_matches_transformer_lens_itself_where_it_is_installed():
    transformer_lens = pytest.importorskip("transformer_lens")
    model = GPT(small_config()).eval()
    state_dict, cfg = model.to_transformer_lens()
    cfg = {k: v for k, v in cfg.items() if k != "original_architecture"}
    tl_model = transformer_lens.HookedTransformer(transformer_lens.HookedTransformerConfig(**cfg))
    tl_model.load_state_dict(state_dict, strict=True)
    x = tokens()
    tl_logits, tl_cache = tl_model.run_with_cache(x)
    logits, cache = model.run_with_cache(x)
    torch.testing.assert_close(logits, tl_logits, atol=1e-4, rtol=1e-4)
    for name in cache:
        if name in tl_cache:
            torch.testing.assert_close(cache[name], tl_cache[name], atol=1e-4, rtol=1e-4,
                                       msg=name)
