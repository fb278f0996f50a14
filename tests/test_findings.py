"""The verdicts on the paper's findings and the "not learned" warning, on hand-made cells
whose numbers say what the answer must be."""
import pytest

from mothello_fast.findings import FINDINGS, verdicts
from mothello_fast.report import report_blocks, study_html, study_markdown
from mothello_fast.summary import summarize
from study_cells import CONTRARY, PAPER, STUDY, grid


def _verdicts(cells) -> list[str]:
    return [v["verdict"] for v in summarize(cells, study=STUDY)["verdicts"]]


def test_every_finding_holds_when_the_numbers_show_it():
    assert _verdicts(grid(PAPER)) == ["holds"] * 4


def test_every_finding_does_not_hold_when_the_numbers_contradict_it():
    assert _verdicts(grid(CONTRARY)) == ["does not hold"] * 4


def test_small_effects_in_noisy_seeds_leave_the_findings_inconclusive():
    # the paper's directions, 2 points apart, in two seeds that disagree by ~0.1
    close = {"naive": dict(in_dist=0.80, cross=0.76, gain_other=-0.01),
             "anchors:4": dict(in_dist=0.80, cross=0.77, gain_other=-0.01),
             "anchors:16": dict(in_dist=0.80, cross=0.78, gain_other=-0.01),
             "unified": dict(in_dist=0.80, cross=0.79, gain_other=0.02)}
    assert _verdicts(grid(close, seeds=(0, 1), noise=0.1)) == ["inconclusive"] * 4


def test_findings_without_the_settings_they_need_are_not_tested():
    cells = grid({"naive": PAPER["naive"]})
    assert _verdicts(cells) == ["holds", "not tested", "not tested", "not tested"]
    cells = grid({"unified": PAPER["unified"], "anchors:4": PAPER["anchors:4"]})
    assert _verdicts(cells)[0] == "not tested"


def test_anchors_that_do_not_rise_do_not_hold():
    flat = {"naive": dict(in_dist=0.9, cross=0.6), "anchors:4": dict(in_dist=0.9, cross=0.6),
            "anchors:16": dict(in_dist=0.9, cross=0.6)}
    assert _verdicts(grid(flat))[1] == "does not hold"


def test_a_rise_too_small_to_matter_does_not_hold_however_sure():
    # a point in all, confirmed by narrow intervals: below the 2-point tolerance
    rising = {"naive": dict(in_dist=0.9, cross=0.600), "anchors:4": dict(in_dist=0.9, cross=0.605),
              "anchors:16": dict(in_dist=0.9, cross=0.610)}
    assert _verdicts(grid(rising, noise=0.0005))[1] == "does not hold"


def test_a_rise_of_a_few_points_that_the_intervals_confirm_holds():
    rising = {"naive": dict(in_dist=0.9, cross=0.60), "anchors:4": dict(in_dist=0.9, cross=0.62),
              "anchors:16": dict(in_dist=0.9, cross=0.64)}
    assert _verdicts(grid(rising, noise=0.002))[1] == "holds"


def test_differences_of_settings_run_on_the_same_seeds_are_paired_seed_by_seed():
    from scipy import stats

    summary = summarize(grid(PAPER, noise=0.02), study=STUDY)
    entry = next(d for d in summary["differences"] if (d["a"], d["b"]) == ("unified", "naive"))
    per_seed = {name: [c for c in grid(PAPER, noise=0.02) if c["setting"] == name]
                for name in ("unified", "naive")}
    at = summary["summary_layer"]["layer"]   # layers 0, 1, 2: the layer is its index
    x, y = ([cell["probes"]["cross_lingual"][at] for cell in per_seed[name]]
            for name in ("unified", "naive"))
    ci = stats.ttest_rel(x, y).confidence_interval(0.95)
    assert entry["cross_lingual"]["method"] == "paired t"
    assert (entry["cross_lingual"]["low"], entry["cross_lingual"]["high"]) == pytest.approx(
        (ci.low, ci.high))


def test_a_fall_between_two_anchor_counts_does_not_hold():
    falling = {"naive": dict(in_dist=0.9, cross=0.60), "anchors:4": dict(in_dist=0.9, cross=0.75),
               "anchors:16": dict(in_dist=0.9, cross=0.70)}
    assert _verdicts(grid(falling))[1] == "does not hold"


def test_a_unified_model_at_the_control_is_not_aligned_it_learned_nothing():
    # cross-lingual equals in-distribution, but both equal the random-init control
    untrained = {"unified": dict(in_dist=0.55, cross=0.55, control=0.55)}
    assert _verdicts(grid(untrained))[2] == "inconclusive"


def test_one_seed_probe_findings_use_the_bootstrap_over_test_games():
    summary = summarize(grid(PAPER, seeds=(0,)), study=STUDY)
    cross = summary["settings"]["naive"]["trained"]["at_summary_layer"]["cross_lingual"]
    assert cross["method"] == "bootstrap" and cross["n"] == 20
    assert cross["low"] < cross["mean"] < cross["high"]
    result = [v["verdict"] for v in summary["verdicts"]]
    # probe findings decided by the bootstrap; transfer gains have no interval from one seed
    assert result == ["holds", "holds", "holds", "inconclusive"]


def test_verdicts_name_the_finding_the_criterion_and_the_numbers():
    for number, verdict in enumerate(verdicts(summarize(grid(PAPER), study=STUDY)), 1):
        assert verdict["number"] == number and verdict["finding"] == FINDINGS[number - 1]
        assert verdict["criterion"] and "[" in verdict["evidence"]


def _warning(summary):
    return [b for b in report_blocks(summary) if b.kind == "warning"]


def test_a_trained_study_opens_without_a_warning():
    summary = summarize(grid(PAPER), study=STUDY)
    assert summary["learned"] == {"learned": True, "reasons": []}
    assert not _warning(summary)
    assert "Warning" not in study_markdown(summary)


@pytest.mark.parametrize("change, reason", [(dict(legal=0.7), "legal-move accuracy 0.7"),
                                            (dict(control=0.88), "over the random-init")])
def test_a_study_whose_models_did_not_learn_opens_with_a_warning(change, reason):
    summary = summarize(grid(PAPER, **change), study=STUDY)
    assert not summary["learned"]["learned"]
    assert any(reason in r for r in summary["learned"]["reasons"])
    (warning,) = _warning(summary)
    assert "smoke test, not evidence" in warning.text
    markdown = study_markdown(summary)
    assert markdown.splitlines()[2].startswith("> **Warning.**")   # right under the title
    assert "class='warning'" in study_html(summary, {})

