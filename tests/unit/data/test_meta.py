"""data/prepared/meta.json as a typed record (PreparedMeta): the bytes prepare writes are the
ones it wrote as a dict (the file is a DVC output hashed in dvc.lock), older files read with
the defaults, a malformed one is one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gapline.config.checks import from_container
from gapline.config.tasks import target_stats
from gapline.core.errors import DataError
from gapline.core.files import write_json
from gapline.data.fingerprint import fingerprint
from gapline.data.layout import META_FILE, SPLITS, read_meta, read_split
from gapline.data.meta import PreparedMeta
from gapline.data.prepare import combined_fingerprint, data_key, feature_stats, source_digest
from gapline.stages.prepare import prepare
from helpers.prepared_meta import make_meta

# The keys the dict code wrote, in the order it built them; the optional ones per case below.
ALWAYS = ["source", "source_digest", "data_key", "kind", "task", "class_names", "input_shape", "counts", "skipped_corrupt", "fingerprints", "fingerprint"]

DIGITS = [str(c) for c in range(10)]
# config's data and task.type -> the task and class names prepare resolves, the optional keys
CASES = {
    "digits images": ({}, "auto", "multiclass", DIGITS, ["pixel_max"]),
    "class filter": ({"classes": ["3", "5", "8"]}, "auto", "multiclass", ["3", "5", "8"], ["pixel_max", "class_filter"]),
    "binary class filter": ({"classes": ["3", "8"]}, "binary", "binary", ["3", "8"], ["pixel_max", "class_filter"]),
    "tabular standardize": ({"source": "breast_cancer", "standardize": True}, "auto", "binary", ["benign", "malignant"], ["features"]),
    "tabular as is": ({"source": "breast_cancer", "standardize": False}, "auto", "binary", ["benign", "malignant"], []),
    "regression": ({"source": "diabetes", "standardize": False}, "auto", "regression", ["disease_progression"], ["target"]),
    "regression standardized": ({"source": "diabetes", "standardize": True}, "regression", "regression", ["disease_progression"], ["target", "features"]),
}


def _old_meta(cfg: Any, folder: Path, task: str, class_names: list[str], extra: list[str]) -> dict[str, Any]:
    """What the dict code wrote for the splits in ``folder``, rebuilt from the arrays
    themselves (not from PreparedMeta): the oracle the typed record must match."""
    splits = {name: read_split(name, folder) for name in SPLITS}
    fingerprints = {name: fingerprint({"x": s.x, "y": s.y}) for name, s in splits.items()}
    out: dict[str, Any] = {
        "source": cfg.data.source,
        "source_digest": source_digest(cfg.data),
        "data_key": data_key(cfg),
        "kind": "image" if splits["train"].x.ndim == 4 else "tabular",
        "task": task,
        "class_names": class_names,
        "input_shape": list(splits["train"].x.shape[1:]),
        "counts": {name: len(s) for name, s in splits.items()},
        "skipped_corrupt": 0,
        "fingerprints": fingerprints,
        "fingerprint": combined_fingerprint(fingerprints),
    }
    if "pixel_max" in extra:
        out["pixel_max"] = 240  # digits' 0..16 pixels times 15
    if "target" in extra:
        out["target"] = target_stats(splits["train"].y)
    if "features" in extra:
        out["features"] = feature_stats(np.asarray(splits["train"].x))
    if "class_filter" in extra:
        out["class_filter"] = {"classes": class_names, "source_class_names": DIGITS}
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_meta_json_is_the_file_the_dict_code_wrote(case: str, tmp_path: Path) -> None:
    data, task, resolved, class_names, extra = CASES[case]
    cfg = from_container({"data": {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 3, **data}, "task": {"type": task}})
    folder = tmp_path / "prepared"
    written = prepare(cfg, folder)
    text = (folder / META_FILE).read_text()
    old = _old_meta(cfg, folder, resolved, class_names, extra)
    oracle = tmp_path / "old.json"
    write_json(oracle, old)
    assert text == oracle.read_text()  # same keys, values and formatting: the same bytes
    assert list(written.as_json()) == ALWAYS + extra == list(old)  # the order the dict was built in
    again = PreparedMeta.read(folder / META_FILE)
    assert again == written and again.as_json() == json.loads(text)
    again.write(tmp_path / "rewritten.json")
    assert (tmp_path / "rewritten.json").read_bytes() == (folder / META_FILE).read_bytes()
    assert read_meta(folder) == written


def test_an_older_meta_reads_with_the_defaults(tmp_path: Path) -> None:
    """No task (data prepared before tasks existed), no data_key (before trials streamed from
    data/prepared), no pixel_max: what the dict readers defaulted to."""
    old = make_meta().as_json()
    for key in ("task", "data_key", "pixel_max"):
        old.pop(key, None)
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({**old, "label_names": ["ignored"]}))
    meta = PreparedMeta.read(path)
    assert meta.task == "multiclass" and meta.data_key == "" and meta.pixel_max == 0
    assert meta.target is None and meta.features is None and meta.class_filter is None
    spec = meta.task_spec()
    assert spec.name == "multiclass" and spec.labels == tuple(str(c) for c in range(10))
    assert (spec.target_mean, spec.target_std, spec.feature_mean, spec.pixel_max) == (0.0, 1.0, None, 0)


def test_task_spec_carries_the_statistics_the_model_standardizes_with() -> None:
    spec = make_meta(
        kind="tabular", task="regression", class_names=["y"], pixel_max=0,
        target={"mean": 2.5, "std": 0.5}, features={"mean": [1.0, 2.0], "std": [3.0, 4.0]},
    ).task_spec()
    assert (spec.name, spec.labels, spec.target_mean, spec.target_std) == ("regression", ("y",), 2.5, 0.5)
    assert spec.feature_mean == (1.0, 2.0) and spec.feature_std == (3.0, 4.0)
    assert make_meta(pixel_max=240).task_spec().pixel_max == 240


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[1, 2]", "holds a JSON list: expected an object"),
        ('"meta"', "holds a JSON str: expected an object"),
        ('{"source": "digits"}', "lacks source_digest, kind, class_names, input_shape, counts, skipped_corrupt, fingerprints, fingerprint"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_a_malformed_meta_is_one_line_naming_the_file(content: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        PreparedMeta.read(path)
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message, message
