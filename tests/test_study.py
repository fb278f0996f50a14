"""The tiny study end to end on CPU: every results.json field present and plausible,
plots and report written, and a second run resuming instead of recomputing; plus the
transfer protocol's bookkeeping and the `mothello study` command line."""
import json

import numpy as np
import pytest

from mothello_fast.checkpoint import load_model
from mothello_fast.cli import build_parser
from mothello_fast.datasets import load_games
from mothello_fast.errors import ConfigError, DatasetError, LanguageError, ProbeError
from mothello_fast.evaluate import evaluate_languages
from mothello_fast.othello import generate_games
from mothello_fast.study import SCALES, _games, _summary, parse_setting, run_study
from mothello_fast.train import TrainConfig
from mothello_fast.transfer import TransferResult, _check_pretrain_games, _curves, run_transfer
from probe_baselines import majority_baseline as majority_class_accuracy


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    results = run_study(setting="naive", languages="atomic,atomic", scale="tiny", out_dir=out,
                        device="cpu", progress=False)
    return out, results


def test_results_json_is_what_the_study_returns(study):
    out, results = study
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))


def test_results_describe_the_run(study):
    _, results = study
    assert (results["setting"], results["scale"], results["languages"]) == (
        "naive", "tiny", "atomic,atomic")
    assert results["language_names"] == ["L0", "L1"]
    assert results["model"]["step"] == SCALES["tiny"].max_steps


def test_legal_move_accuracy_beats_a_random_square(study):
    # a uniformly random playable square is legal ~ 8 / 60 of the time mid-game
    _, results = study
    for language in ("L0", "L1"):
        assert 0.2 < results["model"]["legal_move_accuracy"][language] <= 1.0
        assert 0.0 < results["model"]["val_loss"][language] < np.log(121)


def test_probe_curves_cover_every_layer_and_are_accuracies(study):
    out, results = study
    probe = results["probe"]
    assert probe["layers"] == [0, 1, 2]
    in_dist = np.array(probe["in_distribution"])
    assert in_dist.shape == (3, 2)
    assert all(0.0 <= c <= 1.0 for c in probe["cross_lingual"])
    # every layer's probe reads the board better than guessing each square's most frequent
    # class on the test positions themselves (~0.53 here; the probes reach ~0.61)
    assert (in_dist <= 1.0).all()
    assert (in_dist > majority_baseline(out) + 0.03).all()


def majority_baseline(out) -> float:
    """The majority-class baseline on the study's probe test positions (its align games)."""
    return majority_class_accuracy(np.asarray(load_games(out / "data" / "align")))


def test_alignment_matrix_diagonal_is_the_in_distribution_curve(study):
    _, results = study
    alignment, probe = results["alignment"], results["probe"]
    matrix = np.array(alignment["matrix"])
    layer_row = probe["layers"].index(alignment["layer"])
    np.testing.assert_allclose(np.diag(matrix), probe["in_distribution"][layer_row])
    assert alignment["cross_lingual"] == pytest.approx((matrix[0, 1] + matrix[1, 0]) / 2)
    # naive training: reading one language's probe in the other is worse than in its own
    assert alignment["cross_lingual"] < alignment["in_distribution"]


def test_transfer_curves_start_at_the_pretrained_model(study):
    out, results = study
    transfer = results["transfer"]
    assert transfer["finetune_language"] == "L0"
    assert transfer["steps"][0] == 0 and transfer["steps"][-1] == SCALES["tiny"].finetune_steps
    for language, curve in transfer["accuracy"].items():
        assert len(curve) == len(transfer["steps"])
        assert all(0.0 <= a <= 1.0 for a in curve)
        assert transfer["gain"][language] == pytest.approx(curve[-1] - curve[0])
    # the fine-tuned language learns the full distribution
    assert transfer["gain"]["L0"] > 0
    # step 0 is the pretrained checkpoint (the end of pretraining), evaluated on the first
    # eval_games validation games
    sizes = SCALES["tiny"]
    model, language_set = load_model(out / "transfer" / "pretrain" / "checkpoints"
                                     / f"step-{sizes.max_steps:06d}", device="cpu")
    val_games = np.asarray(load_games(out / "data" / "val"))[:sizes.eval_games]
    pretrained = evaluate_languages(model, language_set, val_games, bf16=False)
    assert set(transfer["accuracy"]) == {"L0", "L1"}
    for language, curve in transfer["accuracy"].items():
        assert curve[0] == pytest.approx(pretrained[f"legal_acc/{language}"], abs=1e-9)


def test_plots_and_report_are_written(study):
    out, results = study
    for name in ("probe_by_layer.png", "alignment.png", "transfer.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert f"{results['alignment']['cross_lingual']:.4f}" in report


def test_rerunning_the_study_skips_finished_steps(study):
    out, results = study
    stamps = {p: p.stat().st_mtime_ns for p in (out / "model.json", out / "probes.json",
                                                 out / "transfer.json")}
    again = run_study(setting="naive", languages="atomic,atomic", scale="tiny", out_dir=out,
                      device="cpu", progress=False)
    assert again == results
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


@pytest.mark.parametrize("setting, expected", [("naive", (0, "standard")),
                                               ("anchors:8", (8, "standard")),
                                               ("unified", (0, "unified"))])
def test_settings_name_anchors_and_objective(setting, expected):
    assert parse_setting(setting) == expected


@pytest.mark.parametrize("setting", ["anchors", "anchors:0", "anchors:x", "shared"])
def test_unknown_settings_are_refused(setting):
    with pytest.raises(ConfigError, match="naive"):
        parse_setting(setting)


def test_transfer_curves_read_the_evaluation_records():
    metrics = [{"step": 0, "legal_acc/A": 0.5, "legal_acc/B": 0.4, "val_loss/A": 2.0},
               {"step": 5, "loss": 1.0},
               {"step": 10, "legal_acc/A": 0.7, "legal_acc/B": 0.45, "val_loss/A": 1.0}]
    result = _curves(metrics, "A")
    assert result.steps == [0, 10]
    assert result.accuracy == {"A": [0.5, 0.7], "B": [0.4, 0.45]}
    assert result.gain == pytest.approx({"A": 0.2, "B": 0.05})
    assert TransferResult.from_dict(result.to_dict()) == result


def test_study_command_line_parses_the_documented_options():
    args = build_parser().parse_args(["study", "--setting", "anchors:4", "--languages",
                                      "atomic,split:3", "--scale", "tiny", "--out", "d"])
    assert (args.setting, args.languages, args.scale, args.out) == (
        "anchors:4", "atomic,split:3", "tiny", "d")


def test_probes_are_tested_on_the_fresh_alignment_games(study):
    out, _ = study
    probes = json.loads((out / "probes.json").read_text())

    def positions(role):   # the first 59 moves of every game
        return int(np.minimum((np.asarray(load_games(out / "data" / role)) >= 0).sum(1), 59).sum())
    assert len(load_games(out / "data" / "align")) == SCALES["tiny"].align_games == 100
    for matrix in probes["matrices"]:
        assert (matrix["n_train"], matrix["n_test"]) == (positions("probe"), positions("align"))


def test_the_tiny_training_keeps_checkpoints_along_the_way(study):
    out, _ = study
    sizes = SCALES["tiny"]
    # a checkpoint every checkpoint_every steps and at the end; the study keeps the last 2
    saved = sorted({*range(sizes.checkpoint_every, sizes.max_steps + 1, sizes.checkpoint_every),
                    sizes.max_steps})
    steps = sorted(p.name for p in (out / "model" / "checkpoints").iterdir())
    assert steps == [f"step-{step:06d}" for step in saved[-2:]]


@pytest.mark.parametrize("change, field", [({"setting": "unified"}, "setting='naive'"),
                                           ({"languages": "atomic,compositional"},
                                            "languages='atomic,atomic'"),
                                           ({"seed": 3}, "seed=0"),
                                           ({"probe": "linear"}, "probe='mlp'")])
def test_rerunning_with_other_parameters_is_refused(study, change, field):
    out, _ = study
    before = (out / "probes.json").read_bytes()
    kwargs = {"setting": "naive", "languages": "atomic,atomic", "scale": "tiny", **change}
    with pytest.raises(ConfigError, match=field):
        run_study(**kwargs, out_dir=out, device="cpu", progress=False)
    assert (out / "probes.json").read_bytes() == before


def test_an_unknown_probe_is_refused_before_any_work(tmp_path):
    with pytest.raises(ProbeError, match="probe='foo'"):
        run_study(scale="tiny", out_dir=tmp_path / "s", probe="foo", device="cpu",
                  progress=False)
    assert not (tmp_path / "s").exists()


def test_study_games_of_another_count_or_seed_are_refused(tmp_path):
    _games(tmp_path / "g", 10, 0, None, False)
    with pytest.raises(DatasetError, match=r"n_games=10 \(expected 20\), seed=0 \(expected 7\)"):
        _games(tmp_path / "g", 20, 7, None, False)


def test_a_single_language_summary_is_strict_json_with_null_cross_lingual(study):
    from mothello_fast.alignment import AlignmentMatrix, LayerAlignment
    from mothello_fast.report import study_markdown

    _, results = study
    per_square = np.full((1, 1, 64), 0.75)
    matrices = tuple(AlignmentMatrix(("L0",), per_square.mean(-1), per_square, 80, 20)
                     for _ in range(3))
    probes = {"probe": "mlp", "labels": "absolute", "seconds": 1.0,
              **LayerAlignment((0, 1, 2), matrices).to_dict()}
    summary = _summary("naive", "atomic", "tiny", 0, SCALES["tiny"],
                       {"seconds": 1.0, **results["model"]}, probes, results["transfer"])
    assert json.loads(json.dumps(summary, allow_nan=False))["alignment"]["cross_lingual"] is None
    assert "cross-lingual n/a" in study_markdown(summary)


TRANSFER_CONFIG = TrainConfig(languages="atomic,atomic", n_layers=1, n_heads=2, d_model=16,
                              d_mlp=32, batch_size=8, max_steps=3, warmup_steps=1, eval_every=0,
                              eval_games=8, checkpoint_every=0, device="cpu", log_every=1)


def test_transfer_checks_the_finetune_language_before_pretraining(tmp_path):
    games = generate_games(16, seed=0, prefix="c4 c3 c2")
    with pytest.raises(LanguageError, match="nope"):
        run_transfer(TRANSFER_CONFIG, finetune_language="nope", pretrain_games=games,
                     finetune_games=games, val_games=games, out_dir=tmp_path / "t",
                     finetune_steps=2, progress=False)
    assert not (tmp_path / "t").exists()


def test_transfer_accepts_a_fixed_prefix_shorter_than_three_moves():
    games = generate_games(16, seed=0, prefix="f5 d6")
    np.testing.assert_array_equal(_check_pretrain_games(games, None), games)
    np.testing.assert_array_equal(_check_pretrain_games(games, "f5 d6"), games)


def test_transfer_refuses_games_without_the_given_prefix(tmp_path):
    games = generate_games(16, seed=0, prefix="f5 d6")
    with pytest.raises(ConfigError, match="prefix='c4 c3 c2'.*f5 d6"):
        run_transfer(TRANSFER_CONFIG, pretrain_games=games, finetune_games=games,
                     val_games=games, out_dir=tmp_path / "t", finetune_steps=2,
                     prefix="c4 c3 c2", progress=False)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("seed", [-1, 1.5, "0", 2**64 - 1])
def test_a_bad_seed_is_refused_before_anything_is_written(tmp_path, seed):
    # a study.json recording the bad seed would refuse the corrected re-run
    with pytest.raises(ConfigError, match="seed="):
        run_study(scale="tiny", out_dir=tmp_path / "s", seed=seed, device="cpu", progress=False)
    assert not (tmp_path / "s").exists()
