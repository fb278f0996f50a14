"""The study grid end to end on CPU at a tiny size: cells in worker processes, the summary
with per-layer intervals, baselines and the random-init control, the report, reuse of
finished cells, a grid killed and rerun, one cell as its own command, and the CLI."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mothello_fast.cell import SCALES, StudyScale, cell_name
from mothello_fast.cli import build_parser, main
from mothello_fast.controls import BASELINES
from mothello_fast.errors import ConfigError
from mothello_fast.report import FIGURES
from mothello_fast.study import aggregate_study, plan_workers, run_study, study_cells

MICRO = StudyScale(train_games=300, val_games=50, probe_games=30, test_games=12, n_layers=2,
                   n_heads=2, d_model=32, d_mlp=64, batch_size=16, max_steps=40, warmup_steps=4,
                   lr=3e-3, eval_games=20, eval_every=20, checkpoint_every=20, probe_hidden=32,
                   probe_batch_size=256, probe_epochs=2, pretrain_games=200, pretrain_steps=20,
                   finetune_games=100, finetune_steps=10, finetune_lr=1e-3, n_evaluations=2)
GRID = dict(settings=["naive", "unified"], seeds=[0, 1], languages="atomic,atomic",
            scale=MICRO, device="cpu", threads=1, transfer=False, progress=False)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    return out, run_study(out_dir=out, workers=2, **GRID)


def without_seconds(value):
    """`value` with every "seconds" entry dropped: the only part of a summary that a rerun
    may change."""
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def test_summary_json_is_what_the_study_returns(grid):
    out, summary = grid
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert sorted(p.name for p in (out / "cells").iterdir()) == sorted(
        cell_name(s, seed) for s in GRID["settings"] for seed in GRID["seeds"])
    assert [c["status"] for c in summary["cells"]] == ["done"] * 4


def test_every_layer_has_a_mean_and_an_interval_across_seeds(grid):
    _, summary = grid
    for name in GRID["settings"]:
        s = summary["settings"][name]
        assert s["layers"] == [0, 1, 2] and s["seeds"] == [0, 1]
        for part in ("trained", "control"):
            for quantity in ("in_distribution", "cross_lingual", "gap"):
                intervals = s[part][quantity]
                assert len(intervals) == 3
                for interval in intervals:
                    assert interval["method"] == "t" and interval["n"] == 2
                    assert interval["low"] <= interval["mean"] <= interval["high"]
            assert np.asarray(s[part]["matrices"]).shape == (3, 2, 2)


def test_every_cell_reports_all_baselines_and_the_random_init_control(grid):
    out, summary = grid
    for name in GRID["settings"]:
        s = summary["settings"][name]
        assert set(s["baselines"]) == set(BASELINES)
        assert s["baselines"]["chance"]["mean"] == pytest.approx(1 / 3)
        for seed in GRID["seeds"]:
            cell = json.loads((out / "cells" / cell_name(name, seed) / "results.json")
                              .read_text())
            assert cell["control"]["layers"] == cell["probes"]["layers"]
            assert 0.4 < cell["baselines"]["majority_per_square_per_move"] < 1
        # the summary's control is the mean of the cells' controls
        cells = [json.loads((out / "cells" / cell_name(name, seed) / "results.json")
                            .read_text()) for seed in GRID["seeds"]]
        mean = np.mean([np.mean(c["control"]["in_distribution"][1]) for c in cells])
        assert s["control"]["in_distribution"][1]["mean"] == pytest.approx(mean)


def test_the_summary_layer_is_the_best_cross_lingual_layer_and_says_so(grid):
    _, summary = grid
    layer = summary["summary_layer"]
    scores = layer["scores"]
    assert set(scores) == {"1", "2"}   # the blocks' outputs, never the embeddings
    assert str(layer["layer"]) == max(scores, key=scores.get)
    assert "best cross-lingual" in layer["rule"] and "no layer 6" in layer["rule"]


def test_emergence_runs_from_the_random_init_model_to_the_end(grid):
    _, summary = grid
    for name in GRID["settings"]:
        grown = summary["settings"][name]["emergence"]
        assert grown["steps"] == [0, 20, 40]
        control = summary["settings"][name]["control"]["cross_lingual"]
        layer = summary["summary_layer"]["layer"]
        assert grown["cross_lingual"][0]["mean"] == pytest.approx(control[layer]["mean"])


def test_the_untrained_models_open_the_report_with_a_warning(grid):
    out, summary = grid
    assert not summary["learned"]["learned"]
    assert "smoke test, not evidence" in (out / "report.md").read_text()


def test_the_html_report_is_self_contained(grid):
    out, summary = grid
    page = (out / "report.html").read_text()
    drawn = [name for name in FIGURES if name not in ("transfer.png", "confusion.png")]
    assert page.count("src='data:image/png;base64,") == len(drawn)   # no transfer here
    assert (out / "report.md").read_text().count("![") == len(drawn)
    assert "http://" not in page and "https://" not in page
    for name in drawn:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    verdict = summary["verdicts"][0]
    assert verdict["finding"] in page and verdict["verdict"] in page


def test_rerunning_reuses_the_finished_cells(grid):
    out, summary = grid
    results = sorted((out / "cells").glob("*/results.json"))
    stamps = {p: p.stat().st_mtime_ns for p in results}
    again = run_study(out_dir=out, workers=1, **GRID)
    assert without_seconds(again) == without_seconds(summary)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_aggregating_alone_gives_the_same_summary(grid, tmp_path):
    out, summary = grid
    assert without_seconds(aggregate_study(out, write=False)) == without_seconds(summary)


GRID_SCRIPT = textwrap.dedent("""
    import sys
    from mothello_fast.cell import StudyScale
    from mothello_fast.study import run_study
    import json
    sizes = StudyScale(**json.loads(sys.argv[2]))
    if __name__ == "__main__":
        run_study(out_dir=sys.argv[1], scale=sizes, workers=1, settings=["naive", "unified"],
                  seeds=[0, 1], device="cpu", threads=1, transfer=False, progress=False)
""")


def test_a_killed_grid_rerun_reuses_its_finished_cells_and_gives_the_same_summary(grid,
                                                                                   tmp_path):
    import dataclasses

    _, summary = grid
    out = tmp_path / "grid"
    script = tmp_path / "grid.py"
    script.write_text(GRID_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(out),
                                json.dumps(dataclasses.asdict(MICRO))], start_new_session=True)
    first = out / "cells" / cell_name("naive", 0) / "results.json"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert first.exists(), "the grid did not finish its first cell"
    stamp = first.stat().st_mtime_ns
    finished = sorted(p.parent.name for p in (out / "cells").glob("*/results.json"))
    assert len(finished) < 4   # killed mid-grid
    again = run_study(out_dir=out, workers=1, **GRID)
    assert first.stat().st_mtime_ns == stamp
    assert without_seconds(again) == without_seconds(summary)


def test_each_cell_is_a_command_of_its_own_and_the_grid_aggregates_them(tmp_path):
    out = tmp_path / "study"
    args = ["study", "--settings", "naive", "--seeds", "3", "--scale", "tiny", "--out",
            str(out), "--no-transfer", "--device", "cpu", "--threads", "1", "--quiet"]
    assert main(args + ["--cell", "0"]) == 0
    assert (out / "cells" / "naive-seed3" / "results.json").exists()
    assert not (out / "summary.json").exists()   # a job of an array leaves the summary
    assert main(args + ["--aggregate-only"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(c["setting"], c["seed"]) for c in summary["cells"]] == [("naive", 3)]
    # one seed: the probe figures' intervals come from the test games
    at = summary["settings"]["naive"]["trained"]["at_summary_layer"]
    assert at["cross_lingual"]["method"] == "bootstrap"
    assert at["cross_lingual"]["n"] == SCALES["tiny"].test_games


def test_list_cells_numbers_the_cells_as_the_cell_option_takes_them(capsys):
    assert main(["study", "--settings", "naive,anchors:4", "--seeds", "0", "1", "--out", "x",
                 "--list-cells"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{i}\t{cell_name(s, seed)}\t{s}\t{seed}"
                     for i, (s, seed) in enumerate(study_cells(["naive", "anchors:4"], [0, 1]))]
    assert lines[1].split("\t")[1] == "anchors4-seed0"


def test_the_study_command_line_parses_the_documented_options():
    args = build_parser().parse_args(
        ["study", "--settings", "naive,anchors:4,anchors:16,unified", "--seeds", "0,1,2",
         "--languages", "atomic,atomic", "--scale", "cpu", "--out", "d", "--workers", "2",
         "--threads", "1", "--no-transfer"])
    assert args.settings == ["naive", "anchors:4", "anchors:16", "unified"]
    assert (args.seeds, args.scale, args.workers, args.threads, args.no_transfer) == (
        ["0", "1", "2"], "cpu", 2, 1, True)
    single = build_parser().parse_args(["study", "--setting", "unified", "--out", "d"])
    assert (single.setting, single.scale) == ("unified", "tiny")


@pytest.mark.parametrize("args, message", [
    (["--setting", "naive", "--settings", "unified"], "--setting and --settings"),
    (["--seeds", "0,x"], "--seeds 'x'"),
    (["--settings", "naive,sideways"], "setting='sideways'")])
def test_bad_grid_options_are_named(tmp_path, capsys, args, message):
    assert main(["study", "--out", str(tmp_path / "s"), "--list-cells", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("cores", [1, 2, 3, 8, 16])
@pytest.mark.parametrize("n_cells", [1, 2, 5, 12])
def test_the_default_workers_and_threads_never_exceed_the_cores(cores, n_cells):
    workers, threads = plan_workers(n_cells, cores=cores)
    assert workers * threads <= cores and 1 <= workers <= n_cells
    assert workers == min(n_cells, cores)
    gpu = plan_workers(n_cells, cores=cores, device="cuda")
    assert gpu == (1, cores)
    assert plan_workers(n_cells, cores=cores, threads=1)[0] == min(n_cells, cores)


def test_an_oversubscribed_plan_is_kept_with_a_warning():
    with pytest.warns(UserWarning, match="4 workers x 2 threads"):
        assert plan_workers(4, workers=4, threads=2, cores=2) == (4, 2)


def test_cells_of_another_study_are_refused(grid, tmp_path):
    out, _ = grid
    with pytest.raises(ConfigError, match="languages="):
        run_study(out_dir=out, workers=1, **{**GRID, "languages": "atomic,split"})


@pytest.mark.parametrize("seed", [-1, 1.5, "0", 2**64])
def test_a_bad_seed_is_refused_before_anything_is_written(tmp_path, seed):
    with pytest.raises(ConfigError, match="seed="):
        run_study(scale="tiny", out_dir=tmp_path / "s", seeds=[seed], device="cpu",
                  progress=False)
    assert not (tmp_path / "s").exists()


def test_an_unknown_probe_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="probe='foo'"):
        run_study(scale="tiny", out_dir=tmp_path / "s", probe="foo", device="cpu",
                  progress=False)
    assert not (tmp_path / "s").exists()
