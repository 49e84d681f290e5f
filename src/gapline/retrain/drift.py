"""The drift gate of ``gapline retrain``: how the current data differs from the data the
``champion`` was trained on, measured before anything is trained.

What is compared. A *summary* of a prepared training split: a seeded sample of at most
:data:`SAMPLE_ROWS` rows (read with :class:`~gapline.data.store.RowReader`, never the whole
split), turned into columns:

- tabular data: each feature as it is; a CSV or Parquet table (meta.json's ``columns``) by
  its column names: a numeric column's filled cells (Kolmogorov-Smirnov) and its missing rate
  (``missing:<name>``, chi-square), a categorical column's categories (chi-square on the
  categories themselves, read through each summary's dictionary: two datasets number them
  differently, and a category only one of them has counts too);
- images: per-image pixel statistics, in [0, 1] of ``pixel_max`` (mean, std, the 5th, 50th
  and 95th percentiles, the mean of each of a 4 x 4 grid of cells, and per channel means for
  colour), a compact representation that needs neither the model nor stored images;
- the label: the class (or each 0/1 label of a multilabel task), or the regression target.

Each retrain stores the summary of its challenger's training data as an artifact of its
MLflow run (``drift/reference/reference.npz`` and ``reference.json``) and points the version's tag
``retrain.drift_reference`` at that run. The next retrain reads the champion's reference and
tests every column against the same summary of the current data: two-sample
Kolmogorov-Smirnov for numeric columns, chi-square on the counts for a class label, a 0/1
label, or a feature with at most :data:`CATEGORICAL_MAX_VALUES` distinct values. A column
drifts when its p-value is below :data:`P_VALUE`; the data drifted when the share of drifted
columns exceeds ``retrain.max_drift``.

This module is the statistics: summaries and their comparison. :mod:`.drift_report` renders
a comparison (``drift.html``, ``drift.json``); :mod:`.drift_gate` stores and fetches the
champion's reference and applies ``retrain.drift``. No TensorFlow and no MLflow import here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gapline.core.files import load_arrays, read_json, save_arrays, write_json
from gapline.data.layout import SPLITS, read_split
from gapline.data.meta import PreparedMeta
from gapline.data.store import RowReader

#: Rows of the training split a summary samples (seeded, without replacement).
SAMPLE_ROWS = 1000
SAMPLE_SEED = 0
#: A column drifts when its test's p-value is below this (evidently's default for samples of
#: up to 1,000 rows).
P_VALUE = 0.05
#: A feature with at most this many distinct values is tested as categorical (chi-square).
CATEGORICAL_MAX_VALUES = 10
#: Cells per side of the grid whose mean brightness describes an image's layout.
GRID = 4
#: Bump when the summary's columns change: a reference of another format is not compared.
#: 2: a table's columns by name, with missing rates and categories (issue #26).
FORMAT = 2
#: A categorical cell that is missing, as the chi-square counts it.
MISSING = "<missing>"
# Sampled images summarized this many at a time (the statistics' copies are float32 rows).
IMAGE_CHUNK = 32

REFERENCE_ARRAYS = "reference.npz"
REFERENCE_META = "reference.json"


# --------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------


@dataclass
class Summary:
    """The columns of a sampled training split, and what they were taken from."""

    kind: str  # image | tabular
    columns: list[str]  # feature columns first, then the label column(s)
    label_columns: list[str]
    categorical: list[str]  # label columns tested with chi-square (features decide by their values)
    values: np.ndarray  # (sample rows, columns) float64
    rows: int  # rows of the whole prepared data (every split)
    train_rows: int
    fingerprint: str = ""
    format: int = FORMAT
    # a table's categorical columns: each one's dictionary (the stored code of a category is its index)
    dictionaries: dict[str, list[str]] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "values"}
        out["sample_rows"] = int(len(self.values))
        return out

    def save(self, folder: Path) -> list[Path]:
        """``reference.npz`` (the sampled columns) and ``reference.json`` (the rest) in ``folder``."""

        arrays, meta = folder / REFERENCE_ARRAYS, folder / REFERENCE_META
        save_arrays(arrays, values=np.asarray(self.values, dtype=np.float64))
        write_json(meta, self.meta())
        return [arrays, meta]

    @classmethod
    def load(cls, folder: Path) -> Summary:
        meta = read_json(folder / REFERENCE_META)
        meta.pop("sample_rows", None)
        return cls(values=load_arrays(folder / REFERENCE_ARRAYS)["values"], **meta)


def sample_rows(n: int, size: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> np.ndarray:
    """A seeded sample of ``min(n, size)`` row indices of ``n``, in file order (read faster)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def image_features(x: np.ndarray, pixel_max: int) -> tuple[np.ndarray, list[str]]:
    """Per-image statistics of ``x`` (n, h, w, c), in [0, 1] of ``pixel_max`` (1 for floats).
    Float32 and a few rows at a time (:func:`summarize`): the copies below are several times
    the rows' size."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    x = x / float(pixel_max or 1)
    n, h, w, c = x.shape
    flat = x.reshape(n, -1)
    cols = [flat.mean(1), flat.std(1), *np.percentile(flat, [5, 50, 95], axis=1)]
    names = ["pixel_mean", "pixel_std", "pixel_p05", "pixel_p50", "pixel_p95"]
    gray = x.mean(axis=3)
    for i, rows in enumerate(np.array_split(np.arange(h), min(GRID, h))):
        for j, cells in enumerate(np.array_split(np.arange(w), min(GRID, w))):
            cols.append(gray[:, rows][:, :, cells].reshape(n, -1).mean(1))
            names.append(f"cell_{i}{j}_mean")
    if c > 1:
        for k in range(c):
            cols.append(x[..., k].reshape(n, -1).mean(1))
            names.append(f"channel_{k}_mean")
    return np.stack(cols, axis=1).astype(np.float64), names


def table_features(x: np.ndarray, columns: list[dict[str, Any]]) -> tuple[np.ndarray, list[str], list[str]]:
    """A table's columns as the summary compares them: ``(values, names, categorical names)``.
    A numeric column gives its cells (NaN where missing) and ``missing:<name>`` (0/1); a
    categorical column its dictionary codes, -1 where missing."""
    x = np.asarray(x, dtype=np.float64)
    cols, names, categorical = [], [], []
    for j, c in enumerate(columns):
        cells = x[:, j]
        if c["kind"] == "numeric":
            cols += [cells, np.isnan(cells).astype(np.float64)]
            names += [c["name"], f"missing:{c['name']}"]
            categorical.append(f"missing:{c['name']}")
        else:
            cols.append(np.where(np.isnan(cells), -1.0, cells))
            names.append(c["name"])
            categorical.append(c["name"])
    return np.stack(cols, axis=1) if cols else np.zeros((len(x), 0)), names, categorical


def label_columns(y: np.ndarray, meta: PreparedMeta) -> tuple[np.ndarray, list[str], list[str]]:
    """The label as columns: ``(values, names, categorical names)``."""
    y = np.asarray(y)
    if y.ndim == 2:  # multilabel: one 0/1 column per label (class_names holds the label names)
        names = [f"label:{name}" for name in meta.class_names or range(y.shape[1])]
        names = names if len(names) == y.shape[1] else [f"label:{i}" for i in range(y.shape[1])]
        return y.astype(np.float64), names, names
    if meta.task == "regression":
        return y.astype(np.float64)[:, None], ["target"], []
    return y.astype(np.float64)[:, None], ["label"], ["label"]


def summarize(prepared: Path, meta: PreparedMeta, size: int = SAMPLE_ROWS) -> Summary:
    """The summary of the training split of the prepared folder ``prepared`` (with its meta)."""

    train = read_split("train", prepared)
    idx = sample_rows(len(train), size)
    kind = "image" if train.x.ndim >= 3 else "tabular"
    reader = RowReader(train.x)
    parts: list[np.ndarray] = []
    names: list[str] = []
    table_categorical: list[str] = []
    try:  # IMAGE_CHUNK rows at a time: a sample of large images is never whole in memory
        for start in range(0, len(idx), IMAGE_CHUNK if kind == "image" else len(idx) or 1):
            x = reader.take(idx[start:start + IMAGE_CHUNK] if kind == "image" else idx)
            if kind == "image":
                chunk, names = image_features(x, meta.pixel_max)
            elif meta.columns:
                chunk, names, table_categorical = table_features(x, meta.columns)
            else:
                chunk = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
                names = [f"feature_{i}" for i in range(chunk.shape[1])]
            parts.append(chunk)
    finally:
        reader.close()
    features = np.concatenate(parts) if parts else np.zeros((0, len(names)))
    labels, label_names, categorical = label_columns(train.y[idx], meta)
    rows = sum(len(read_split(name, prepared)) for name in SPLITS)
    dictionaries = {c["name"]: list(c["values"]) for c in meta.columns or () if c["kind"] == "categorical"}
    return Summary(kind=kind, columns=[*names, *label_names], label_columns=label_names,
                   categorical=[*table_categorical, *categorical], values=np.concatenate([features, labels], axis=1),
                   rows=int(rows), train_rows=len(train), fingerprint=meta.fingerprint, dictionaries=dictionaries)


# --------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------


@dataclass
class Column:
    """One column's test."""

    name: str
    test: str  # ks | chi2 | none (constant in both)
    statistic: float
    p_value: float
    drifted: bool
    # None when the columns changed (valid JSON: no NaN)
    reference_mean: float | None = None
    current_mean: float | None = None
    reference_std: float | None = None
    current_std: float | None = None


def column_test(name: str, ref: np.ndarray, cur: np.ndarray, categorical: bool) -> Column:
    """Kolmogorov-Smirnov for numbers, chi-square on the counts for categories."""
    from scipy import stats

    ref, cur = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]  # a table's missing cells: tested as its missing:<name> column
    values = np.union1d(ref, cur)
    if not len(ref) or not len(cur):
        return Column(name, "none", 0.0, 1.0, False)
    moments = dict(reference_mean=float(ref.mean()), current_mean=float(cur.mean()),
                   reference_std=float(ref.std()), current_std=float(cur.std()))
    if len(values) <= 1:
        return Column(name, "none", 0.0, 1.0, False, **moments)
    if categorical or len(values) <= CATEGORICAL_MAX_VALUES:
        table = np.stack([[np.sum(ref == v) for v in values], [np.sum(cur == v) for v in values]])
        statistic, p_value = stats.chi2_contingency(table)[:2]
        test = "chi2"
    else:
        result = stats.ks_2samp(ref, cur)
        statistic, p_value, test = result.statistic, result.pvalue, "ks"
    p_value = float(p_value)
    return Column(name, test, round(float(statistic), 6), p_value, bool(p_value < P_VALUE), **moments)


@dataclass
class Drift:
    """The drift check of one retrain: what was compared, the per-column tests, the verdict.

    ``status``: ``checked`` (compared), ``unchanged`` (the same data fingerprint as the
    champion's: nothing to compare), ``no-champion``, or ``no-reference`` (the champion has no
    stored reference, or it cannot be read or compared: ``note`` says why)."""

    status: str
    policy: str
    max_drift: float
    note: str = ""
    champion: str | None = None
    reference_run: str | None = None
    columns: list[Column] = field(default_factory=list)
    rows_reference: int | None = None
    rows_current: int | None = None
    sample_reference: int = 0
    sample_current: int = 0
    kind: str = ""

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @property
    def n_drifted(self) -> int:
        return sum(c.drifted for c in self.columns)

    @property
    def share(self) -> float | None:
        if self.status == "unchanged":
            return 0.0
        return self.n_drifted / self.n_columns if self.columns else None

    @property
    def known(self) -> bool:
        """Whether the check measured anything (a reference, or the champion's own data)."""
        return self.status in ("checked", "unchanged")

    @property
    def detected(self) -> bool:
        """The data drifted: the share of drifted columns exceeds ``retrain.max_drift``."""
        share = self.share
        return share is not None and share > self.max_drift

    @property
    def grew(self) -> bool:
        """The current data has more rows than the champion's."""
        return self.rows_reference is not None and self.rows_current is not None and self.rows_current > self.rows_reference

    def summary(self) -> dict[str, Any]:
        """The numbers: for reports/retrain.json, drift.json and the run's metrics."""
        return {
            "status": self.status, "policy": self.policy, "max_drift": self.max_drift, "note": self.note,
            "drift_share": self.share, "n_drifted_columns": self.n_drifted, "n_columns": self.n_columns,
            "drift_detected": self.detected, "data_grew": self.grew, "rows_reference": self.rows_reference,
            "rows_current": self.rows_current, "sample_reference": self.sample_reference,
            "sample_current": self.sample_current, "kind": self.kind, "champion": self.champion,
            "reference_run": self.reference_run, "p_value": P_VALUE,
            "drifted_columns": [c.name for c in self.columns if c.drifted],
        }

    def metrics(self) -> dict[str, float]:
        if not self.known:
            return {}
        out = {"drift_share": float(self.share or 0.0), "n_drifted_features": float(self.n_drifted),
               "n_features": float(self.n_columns), "drift_detected": float(self.detected)}
        if self.rows_reference is not None and self.rows_current is not None:
            out.update(rows_reference=float(self.rows_reference), rows_current=float(self.rows_current))
        return out

    def describe(self) -> str:
        """One sentence for the console and the reason."""
        if self.status == "checked":
            rows = f"{self.rows_reference} -> {self.rows_current} rows"
            return (f"{self.n_drifted} of {self.n_columns} columns drifted (share {self.share:.2f}, "
                    f"retrain.max_drift={self.max_drift:g}; {rows})")
        if self.status == "unchanged":
            return "the data is the champion's own (same fingerprint): no drift"
        return self.note


def compare(reference: Summary, current: Summary, policy: str, max_drift: float, **where: Any) -> Drift:
    """Test every column of ``current`` against ``reference``. Summaries of another format,
    kind or column set cannot be compared column by column: every column counts as drifted."""
    drift = Drift("checked", policy, max_drift, rows_reference=reference.rows, rows_current=current.rows,
                  sample_reference=len(reference.values), sample_current=len(current.values), kind=current.kind, **where)
    if reference.format != current.format:  # an upgrade: not the data's change
        drift.status = "no-reference"
        drift.note = (f"the champion's reference is a summary of format {reference.format}, this gapline makes "
                      f"format {current.format}: not compared; the next champion a retrain trains will have one")
        return drift
    if (reference.kind, reference.columns) != (current.kind, current.columns):
        drift.note = (f"the data's columns changed ({reference.kind}, {len(reference.columns)} columns -> "
                      f"{current.kind}, {len(current.columns)} columns): every column counts as drifted")
        drift.columns = [Column(name, "schema", 1.0, 0.0, True) for name in current.columns]
        return drift
    categorical = set(reference.categorical)
    drift.columns = []
    for i, name in enumerate(current.columns):
        ref, cur = reference.values[:, i], current.values[:, i]
        if name in current.dictionaries:
            ref, cur = _common_codes(ref, reference.dictionaries.get(name, []), cur, current.dictionaries[name])
        drift.columns.append(column_test(name, ref, cur, name in categorical))
    return drift


def _common_codes(ref: np.ndarray, ref_values: list[str], cur: np.ndarray, cur_values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Two summaries' codes of one categorical column, numbered alike: each code read as its
    category through its own dictionary (-1: missing), then numbered in the union of both."""
    def categories(codes: np.ndarray, values: list[str]) -> list[str]:
        return [MISSING if c < 0 or int(c) >= len(values) else values[int(c)] for c in codes]

    ref_text, cur_text = categories(ref, ref_values), categories(cur, cur_values)
    index = {v: float(i) for i, v in enumerate(sorted(set(ref_text) | set(cur_text)))}
    return np.asarray([index[v] for v in ref_text]), np.asarray([index[v] for v in cur_text])
