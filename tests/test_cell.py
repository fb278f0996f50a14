"""One study cell end to end at a tiny size: every file it writes, its controls, emergence
and transfer steps, resumption, and the parameters that define it."""
import json

import numpy as np
import pytest

from mothello_fast.cell import (DATA_ROLES, SCALES, StudyScale, _games, parse_setting,
                                run_cell, setting_label, summary_layer_candidates)
from mothello_fast.checkpoint import load_model
from mothello_fast.datasets import load_games
from mothello_fast.errors import ConfigError, DatasetError
from mothello_fast.evaluate import evaluate_languages, language_confusion
from mothello_fast.seeds import derive_seed
from test_study import MICRO


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    out = tmp_path_factory.mktemp("cell")
    return out, run_cell(setting="naive", seed=5, scale=MICRO, out_dir=out, device="cpu",
                         threads=1, progress=False)


def test_results_json_is_what_the_cell_returns(cell):
    out, results = cell
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    for name in ("cell.json", "data.json", "model.json", "probes.json", "emergence.json",
                 "transfer.json"):
        assert (out / name).exists(), name
    assert results["transfer_status"] == "done"
    assert set(results["seconds"]) == {"data", "training", "probes", "emergence", "transfer"}


def test_every_role_draws_its_games_from_its_derived_seed(cell):
    out, _ = cell
    seeds = json.loads((out / "data.json").read_text())["seeds"]
    for role in DATA_ROLES:
        assert seeds[role] == derive_seed(5, f"{role}-games")
        assert load_games(out / "data" / role).seed == seeds[role]
    assert len(set(seeds.values())) == len(seeds)


def test_probes_cover_every_layer_and_count_the_test_positions_per_game(cell):
    out, results = cell
    probes = results["probes"]
    assert probes["layers"] == [0, 1, 2]
    test_games = np.asarray(load_games(out / "data" / "test"))
    positions = np.minimum((test_games >= 0).sum(1), 59)
    per_game = probes["per_game"]
    np.testing.assert_array_equal(per_game["counts"], positions)
    assert probes["n_test"] == positions.sum()
    for matrix, hits in zip(probes["matrices"], per_game["hits"]):
        # each game's hits, summed, are the matrix's accuracy times the positions
        np.testing.assert_allclose(np.asarray(hits).sum(-1) / positions.sum(), matrix,
                                   atol=1e-12)


def test_the_control_is_probed_exactly_as_the_trained_model(cell):
    _, results = cell
    trained, control = results["probes"], results["control"]
    assert control["layers"] == trained["layers"]
    assert (control["n_train"], control["n_test"]) == (trained["n_train"], trained["n_test"])
    assert control["matrices"] != trained["matrices"]


def test_emergence_reads_every_checkpoint_at_the_candidate_layers(cell):
    out, results = cell
    grown = results["emergence"]
    assert grown["layers"] == summary_layer_candidates(MICRO.n_layers) == [1, 2]
    assert grown["steps"] == [0, 20, 40]
    final = [results["probes"]["cross_lingual"][layer] for layer in grown["layers"]]
    assert grown["cross_lingual"][-1] == final
    start = [results["control"]["cross_lingual"][layer] for layer in grown["layers"]]
    assert grown["cross_lingual"][0] == start
    assert all(isinstance(u, float) for row in grown["unification"] for u in row)


def test_model_json_holds_the_training_curves(cell):
    _, results = cell
    curves = results["model"]["curves"]
    assert curves["legal_move_accuracy"]["steps"] == [0, 20, 40]
    assert curves["legal_move_accuracy"]["L0"][-1] == results["model"]["legal_move_accuracy"]["L0"]
    assert curves["loss"]["steps"][-1] == MICRO.max_steps


def test_confusion_counts_answers_in_the_fine_tuned_language(cell):
    out, results = cell
    transfer = results["transfer"]
    assert transfer["steps"][0] == 0 and transfer["steps"][-1] == MICRO.finetune_steps
    assert list(transfer["confusion"]) == ["L1"]
    model, language_set = load_model(out / "transfer" / "finetune-L0")
    val = np.asarray(load_games(out / "data" / "val"))[:MICRO.eval_games]
    assert transfer["confusion"]["L1"][-1] == pytest.approx(
        language_confusion(model, language_set, val, language="L1", into="L0"))
    assert transfer["gain_others"] == pytest.approx(transfer["gain"]["L1"])
    # step 0 of the curves is the pretrained model
    pretrained, _ = load_model(out / "transfer" / "pretrain")
    accuracy = evaluate_languages(pretrained, language_set, val)["legal_acc/L1"]
    assert transfer["accuracy"]["L1"][0] == pytest.approx(accuracy)


def test_language_confusion_against_a_position_by_position_count(cell):
    import torch

    out, _ = cell
    model, language_set = load_model(out / "model")
    games = np.asarray(load_games(out / "data" / "test"))[:4]
    l0 = set(language_set.token_ids("L0").ravel()) - {-1}
    l1 = set(language_set.token_ids("L1").ravel()) - {-1}
    encoded = language_set.encode(games, "L1")
    hits = total = 0
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(np.asarray(encoded.tokens), dtype=torch.long))
    for g, game in enumerate(games):
        n_moves = int((game >= 0).sum())
        for pos in range(encoded.tokens.shape[1]):
            move = encoded.move_index[g, pos]
            if encoded.move_end[g, pos] and 0 <= move < n_moves - 1:
                token = int(logits[g, pos].argmax())
                hits += token in l0 and token not in l1
                total += 1
    assert language_confusion(model, language_set, games, language="L1", into="L0") == \
        pytest.approx(hits / total)


def test_a_cell_run_without_transfer_gets_it_when_run_again_with_it(tmp_path):
    out = tmp_path / "c"
    first = run_cell(setting="unified", seed=1, scale=MICRO, out_dir=out, device="cpu",
                     threads=1, transfer=False, progress=False)
    assert (first["transfer"], first["transfer_status"]) == (None, "skipped")
    assert not (out / "data" / "pretrain").exists()
    stamp = (out / "probes.json").stat().st_mtime_ns
    second = run_cell(setting="unified", seed=1, scale=MICRO, out_dir=out, device="cpu",
                      threads=1, progress=False)
    assert second["transfer_status"] == "done"
    assert second["transfer"]["confusion"] is None   # unified answers in its output space
    assert (out / "probes.json").stat().st_mtime_ns == stamp
    assert second["probes"] == first["probes"]
    # and without transfer again, the finished transfer is still reported
    third = run_cell(setting="unified", seed=1, scale=MICRO, out_dir=out, device="cpu",
                     threads=1, transfer=False, progress=False)
    assert third["transfer"] == second["transfer"]


@pytest.mark.parametrize("change, field", [({"setting": "unified"}, "setting='naive'"),
                                           ({"seed": 6}, "seed=5"),
                                           ({"languages": "atomic,split"}, "languages=")])
def test_rerunning_a_cell_with_other_parameters_is_refused(cell, change, field):
    out, _ = cell
    before = (out / "probes.json").read_bytes()
    kwargs = {"setting": "naive", "seed": 5, "scale": MICRO, **change}
    with pytest.raises(ConfigError, match=field):
        run_cell(**kwargs, out_dir=out, device="cpu", progress=False)
    assert (out / "probes.json").read_bytes() == before


def test_cell_games_of_another_count_or_seed_are_refused(tmp_path):
    _games(tmp_path / "g", 10, 0, None, None, True)
    with pytest.raises(DatasetError, match=r"n_games=10 \(expected 20\), seed=0 \(expected 7\)"):
        _games(tmp_path / "g", 20, 7, None, None, True)


@pytest.mark.parametrize("setting, expected", [("naive", (0, "standard")),
                                               ("anchors:8", (8, "standard")),
                                               ("unified", (0, "unified"))])
def test_settings_name_anchors_and_objective(setting, expected):
    assert parse_setting(setting) == expected


@pytest.mark.parametrize("setting", ["anchors", "anchors:0", "anchors:x", "anchors:08",
                                     "shared", None])
def test_unknown_settings_are_refused(setting):
    with pytest.raises(ConfigError, match="naive"):
        parse_setting(setting)


def test_a_setting_names_a_directory_without_a_colon():
    assert setting_label("anchors:16") == "anchors16"


def test_the_summary_layer_candidates_are_the_protocol_s_layer_or_every_block():
    assert summary_layer_candidates(8) == [6]
    assert summary_layer_candidates(2) == [1, 2]


def test_a_scale_with_a_warm_up_as_long_as_training_is_refused():
    with pytest.raises(ConfigError, match="warmup_steps=40"):
        StudyScale(**{**MICRO.__dict__, "warmup_steps": 40})


def test_the_scales_warm_up_within_their_training():
    for sizes in SCALES.values():
        assert sizes.warmup_steps < sizes.max_steps / 5
        assert sizes.checkpoint_every <= sizes.max_steps
