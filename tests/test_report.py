"""The study report from a hand-made summary: every figure, the Markdown and the HTML page
say the same numbers, and a partial grid reports what it has."""
import re

from mothello_fast.report import FIGURES, format_interval, study_html, study_markdown, \
    write_study_report
from mothello_fast.summary import summarize
from study_cells import PAPER, STUDY, cell, grid


def test_the_report_is_written_into_a_directory_that_does_not_exist_yet(tmp_path):
    summary = summarize(grid(PAPER), study=STUDY)
    paths = write_study_report(summary, tmp_path / "new" / "report")
    assert sorted(p.name for p in paths.values()) == sorted([*FIGURES, "report.md",
                                                             "report.html"])
    assert all(p.exists() for p in paths.values())


def test_markdown_and_html_carry_the_same_numbers():
    summary = summarize(grid(PAPER), study=STUDY)
    markdown, page = study_markdown(summary), study_html(summary, {})
    numbers = re.findall(r"[+-]?\d\.\d{3} \[[+-]?\d\.\d{3}, [+-]?\d\.\d{3}\]", markdown)
    assert len(numbers) > 50
    for number in numbers:
        assert number in page
    naive = summary["settings"]["naive"]["trained"]["at_summary_layer"]["cross_lingual"]
    assert format_interval(naive) in markdown


def test_a_partial_grid_reports_its_finished_cells_and_names_the_others():
    cells = grid({"naive": PAPER["naive"]}, seeds=(0,))
    pending = [{"setting": "unified", "seed": 0, "status": "running or interrupted",
                "seconds": {}}]
    markdown = study_markdown(summarize(cells, study=STUDY, pending=pending))
    assert "1 of 2 cells finished (not finished: unified seed 0 (running or interrupted))" \
        in markdown


def test_a_study_without_finished_cells_still_writes_its_reports(tmp_path):
    summary = summarize([], study=STUDY)
    paths = write_study_report(summary, tmp_path)
    assert set(p.name for p in paths.values()) == {"report.md", "report.html"}


def test_a_setting_without_transfer_leaves_the_transfer_section_saying_so():
    cells = [cell("naive", 0, in_dist=0.9, cross=0.6, gain_other=None)]
    assert "Transfer was not run" in study_markdown(summarize(cells, study=STUDY))
