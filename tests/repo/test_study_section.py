"""README's study block is what docs/study_section.py renders from the committed reports/study/."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _section():
    from helpers.project_store import docs_module

    return docs_module("study_section")


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "diabetes"])
def test_readme_study_block_says_what_reports_study_says(name: str) -> None:
    section = _section()
    begin, end = section.markers(name)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(begin): readme.index(end) + len(end)]
    assert block == section.render(ROOT / section.STUDIES[name], name)
    # and the table in it is the one the study wrote from its csv
    from gapline.experiments.study.table import read_csv, table_markdown

    folder = ROOT / section.STUDIES[name]
    assert table_markdown(read_csv(folder / "study.csv")) == (folder / "study.md").read_text(encoding="utf-8")


def _reports_with(tmp_path: Path, technique: str, column: str, value: str) -> Path:
    """A copy of reports/study/ whose study.csv has one cell changed."""
    for name in ("study.md", "study.csv", "learning_curve.csv"):
        (tmp_path / name).write_bytes((ROOT / "reports/study" / name).read_bytes())
    text = (tmp_path / "study.csv").read_text(encoding="utf-8").splitlines()
    col = text[0].split(",").index(column)
    for i, line in enumerate(text[1:], start=1):
        cells = line.split(",")
        if cells[0] == technique:
            cells[col] = value
            text[i] = ",".join(cells)
    (tmp_path / "study.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    return tmp_path


def test_render_follows_the_numbers(tmp_path: Path) -> None:
    """Change one mean in the CSV and the sentence changes with it: nothing is typed by hand."""
    block = _section().render(_reports_with(tmp_path, "l1", "gap_loss_test_mean", "9.5"))
    assert "The widest loss gap is `l1`'s (9.500" in block


def test_splice_refuses_a_readme_without_markers() -> None:
    with pytest.raises(SystemExit, match="markers"):
        _section().splice("no block here", "x")


def test_the_transfer_pair_is_compared_with_itself_never_ranked_with_the_arms(tmp_path: Path) -> None:
    """The transfer arms run on their own split: even at the top of the table they are not
    'the top arm', and their sentence gives both of their numbers."""
    block = _section().render(_reports_with(tmp_path, "transfer_5_9", "test_accuracy_mean", "0.999"))
    assert "The top arm is `best_practice`" in block
    assert "`transfer_5_9` and `scratch_5_9` are the transfer comparison" in block and "99.9 ±" in block


def test_the_verdict_sentence_follows_the_paired_tests(tmp_path: Path) -> None:
    """Which arms beat the baseline beyond noise is read from the csv's verdicts."""
    def verdict(block: str) -> str:
        return next(line for line in block.splitlines() if "beyond noise" in line.lower())

    better = verdict(_section().render(_reports_with(tmp_path, "l1", "verdict", "better")))
    assert better.startswith("Beyond noise") and "`l1`" in better.split(" beat")[0]
    worse = verdict(_section().render(_reports_with(tmp_path, "l1", "verdict", "worse")))
    assert "`l1`" in worse.split(";")[1] and " worse" in worse.split(";")[1]
