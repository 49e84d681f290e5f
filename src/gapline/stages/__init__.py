"""Thin DVC stage entry points over pure functions; paths every stage agrees on live here."""

from __future__ import annotations

from pathlib import Path

from gapline.data.layout import AUGMENTED, PREPARED, SPLITS, read_split, split_dir  # noqa: F401  (the stages' shared paths)

REPORTS = Path("reports")
METRICS_FILE = REPORTS / "metrics.json"
TRAIN_INFO_FILE = REPORTS / "train.json"
PLOTS = REPORTS / "plots"
DIAGNOSIS_FILE = REPORTS / "diagnosis.md"
# per class (classification), per label (multilabel) or per target range (regression), on test
BREAKDOWN_FILE = REPORTS / "breakdown.json"
