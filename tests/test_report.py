"""The study report (plots and Markdown) from a results dict."""
from mothello_fast.report import write_study_report

RESULTS = {
    "setting": "naive", "languages": "atomic,atomic", "language_names": ["L0", "L1"],
    "scale": "tiny", "seed": 0,
    "model": {"step": 10, "legal_move_accuracy": {"L0": 0.9, "L1": 0.8}},
    "probe": {"kind": "mlp", "layers": [0, 1], "in_distribution": [[0.7, 0.7], [0.8, 0.9]],
              "cross_lingual": [0.6, 0.65]},
    "alignment": {"layer": 1, "languages": ["L0", "L1"], "matrix": [[0.8, 0.6], [0.7, 0.9]],
                  "in_distribution": 0.85, "cross_lingual": 0.65},
    "transfer": {"finetune_language": "L0", "steps": [0, 5],
                 "accuracy": {"L0": [0.2, 0.5], "L1": [0.2, 0.3]},
                 "gain": {"L0": 0.3, "L1": 0.1}},
}


def test_the_report_is_written_into_a_directory_that_does_not_exist_yet(tmp_path):
    paths = write_study_report(RESULTS, tmp_path / "new" / "report")
    assert sorted(p.name for p in paths.values()) == ["alignment.png", "probe_by_layer.png",
                                                       "report.md", "transfer.png"]
    assert all(p.exists() for p in paths.values())
