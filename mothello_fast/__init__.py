"""mothello-fast: a fast toolkit for cross-lingual alignment and transfer on mOthello.

The engine (`othello`) and datasets need only numpy; everything that needs torch
is imported on first use, so ``import mothello_fast`` stays light.
"""
from importlib import import_module

from .errors import (CheckpointError, DatasetError, GameArrayError, IllegalMoveError,
                     InvalidSquareError, LanguageError, MothelloError)
from .errors import ProbeError
from .othello import (BLACK, EMPTY, GAME_PLIES, PLAYABLE_SQUARES, START_SQUARES, WHITE, Board,
                      Replay, game_lengths, generate_games, parse_moves, parse_square, perft,
                      relative_board, replay, replay_bitboards, square_name, validate_games)
from .datasets import (GameDataset, deduplicate, generate_dataset, load_games, split_games,
                       write_games)

__version__ = "0.1.0"

# Public names that live in modules importing torch (or other heavy libraries):
# name -> module, resolved on first attribute access.
_LAZY = {
    "GPT": ".model", "GPTConfig": ".model", "ActivationCache": ".model",
    "save_checkpoint": ".checkpoint", "load_checkpoint": ".checkpoint", "load_model": ".checkpoint",
    "TrainConfig": ".train", "TrainResult": ".train",  # train(): mothello_fast.train.train
    "train_on_dataset": ".train", "load_train_config": ".train",
    "legal_move_accuracy": ".evaluate", "evaluate_languages": ".evaluate",
    "evaluate_checkpoint": ".evaluate", "language_confusion": ".evaluate",
    "Language": ".languages", "LanguageSet": ".languages", "Encoded": ".languages",
    "Corpus": ".corpus", "Batch": ".corpus",
    "attention": ".kernels.attention", "probe_loss": ".kernels.probe",
    "KMeans": ".kmeans",
    "calign": ".concepts", "colap": ".concepts", "CalignResult": ".concepts",
    "ColapResult": ".concepts", "AlignedPair": ".concepts", "concept_report": ".concepts",
    "dictionary_from_translation_table": ".concepts", "dictionary_from_token_square": ".concepts",
    "normalize_rows": ".geometry", "nearest_neighbors": ".geometry",
    "language_identification": ".geometry", "cross_lingual_neighbors": ".geometry",
    "translation_retrieval": ".geometry", "canonical_angles": ".geometry",
    "random_canonical_cosines": ".geometry", "neighbor_overlap": ".geometry",
    "unification_score": ".unification", "similarity_matrix": ".unification",
    "plot_similarity_matrix": ".unification",
    "LinearProbe": ".probes", "MLPProbe": ".probes", "load_probe": ".probes",
    "probe_model": ".probes",
    "Activations": ".activations", "ActivationStore": ".activation_store",
    "ParallelStore": ".activation_store",
    "collect_activations": ".activations", "load_activations": ".activation_store",
    "resolve_layers": ".activations", "collect_parallel": ".activations",
    "ParallelActivations": ".activations", "compare_reports": ".concepts",
    "to_transformer_lens": ".model",
    "alignment_matrix": ".alignment", "alignment_by_layer": ".alignment",
    "model_alignment": ".alignment", "AlignmentMatrix": ".alignment", "align": ".alignment",
    "probe_activations": ".probes", "ProbeResult": ".probes", "concept_metrics": ".concepts",
    "ConceptReport": ".concepts", "act_name": ".model",
    "LayerAlignment": ".alignment",
    "run_transfer": ".transfer", "finetune_curves": ".transfer", "TransferResult": ".transfer",
    "run_study": ".study", "run_study_cell": ".study", "aggregate_study": ".study",
    "study_cells": ".study", "run_cell": ".cell", "StudyScale": ".cell", "SCALES": ".cell",
    "summarize": ".summary", "verdicts": ".findings", "write_study_report": ".report",
    "derive_seed": ".seeds", "Interval": ".statistics", "t_interval": ".statistics",
    "welch_interval": ".statistics", "bootstrap_ratio": ".statistics",
    "baseline_accuracies": ".controls", "random_init_model": ".controls",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mothello_fast' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
