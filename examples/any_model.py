"""Analyse a model that is not this toolkit's: a TransformerLens HookedTransformer with the
Othello-GPT configuration (Li et al. 2023), end to end.

games -> the model's tokens -> its hidden states -> a collection -> probes and alignment.

    python examples/any_model.py            # random weights; needs transformer_lens

With the public Othello-GPT weights, load them into the HookedTransformer first (or use
``mothello_fast.GPT.from_transformer_lens``). `analyse` takes any ``run_with_cache``, so
the same steps serve a Hugging Face model (``output_hidden_states=True``) or plain arrays.
"""
from __future__ import annotations

import numpy as np
import torch

import mothello_fast as mf

# Othello-GPT: 8 blocks, d_model 512, 8 heads, vocabulary 61 (pad 0, squares 1..60), 59 tokens
OTHELLO_GPT = dict(n_layers=8, d_model=512, d_head=64, n_heads=8, d_mlp=2048, d_vocab=61,
                   n_ctx=59, act_fn="gelu", normalization_type="LN")


def analyse(run_with_cache, n_layers: int, *, n_games: int = 200, seed: int = 0,
            probe=None) -> tuple[mf.ParallelActivations, mf.LayerAlignment]:
    """Probe every layer's residual stream of the model behind `run_with_cache` (tokens
    int64 [B, 59] -> (logits, cache with TransformerLens's hook names)) on `n_games`
    fresh games: (the collection, the probes' accuracy by layer on held-out positions)."""
    language_set = mf.LanguageSet.from_spec("atomic")   # Othello-GPT's vocabulary
    games = mf.generate_games(n_games, seed=seed)
    tokens = torch.as_tensor(language_set.encode(games, "L0").tokens[:, :59])
    with torch.no_grad():
        _, cache = run_with_cache(tokens)
    # layer l = the output of block l, as Othello-GPT's probe tables count (0: embeddings)
    hidden = {0: {"L0": cache["blocks.0.hook_resid_pre"]}}
    hidden.update({l: {"L0": cache[f"blocks.{l - 1}.hook_resid_post"]}
                   for l in range(1, n_layers + 1)})
    collection = mf.ParallelActivations.from_sequences(hidden, language_set, games)
    alignment = mf.align(collection, probe=probe or mf.LinearProbe(epochs=4), seed=seed)
    return collection, alignment


def main() -> None:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model = HookedTransformer(HookedTransformerConfig(**OTHELLO_GPT)).eval()
    collection, alignment = analyse(model.run_with_cache, OTHELLO_GPT["n_layers"])
    print(f"{len(collection)} positions; probe accuracy by layer (random weights: near the "
          "majority baseline):")
    for layer, accuracy in zip(alignment.layers, alignment.in_distribution[:, 0]):
        print(f"  layer {layer}: {accuracy:.3f}")
    print(f"majority per square: {np.mean([np.bincount(c, minlength=3).max() for c in collection.board.T]) / len(collection):.3f}")


if __name__ == "__main__":
    main()
