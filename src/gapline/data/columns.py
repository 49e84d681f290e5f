"""What a table's model learns its preprocessing from, fitted on the training split only:
each numeric column's median (imputation), whether it needs a missing indicator, its mean and
std (standardization); each categorical column's vocabulary (values seen at least
``min_count`` times in training; the rest, and values never seen, share one out-of-vocabulary
bucket) and its encoding (one-hot, or an embedding past ``one_hot_max`` values).

The result is plain JSON: ``meta.json``'s ``columns``, and the config of the model's
:class:`gapline.models.table_encoding.TableEncoding` layer, so the saved model carries it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gapline.data.table import CATEGORICAL, Column

#: The buckets every categorical column has before its vocabulary: missing, out of vocabulary
#: (gapline.layers.TableEncoding numbers them 0 and 1).
RESERVED_BUCKETS = 2


def embedding_dim(buckets: int) -> int:
    """A common rule of thumb for an embedding's width (fast.ai's), at most 16 here."""
    return int(min(16, round(1.6 * buckets**0.56)))


def fit_columns(
    columns: Sequence[Column], x_train: np.ndarray, *, standardize: bool = True, one_hot_max: int = 16, min_count: int = 1
) -> list[dict[str, Any]]:
    """Each column's JSON record (:meth:`Column.as_json`) with what training fits, from the
    training rows ``x_train`` alone."""
    x_train = np.asarray(x_train, dtype=np.float64)
    fitted = []
    for j, column in enumerate(columns):
        record = column.as_json()
        cells = x_train[:, j]
        missing = np.isnan(cells)
        observed = cells[~missing]
        if column.kind == CATEGORICAL:
            counts = np.bincount(observed.astype(np.int64), minlength=len(column.values))
            kept = [i for i in np.lexsort((np.arange(len(counts)), -counts)) if counts[i] >= min_count]
            vocabulary = [column.values[i] for i in kept]
            buckets = RESERVED_BUCKETS + len(vocabulary)
            record.update(vocabulary=vocabulary, encoding="one_hot" if len(vocabulary) <= one_hot_max else "embedding")
            if record["encoding"] == "embedding":
                record["embedding_dim"] = embedding_dim(buckets)
        else:
            if observed.size:
                median, mean, std = float(np.median(observed)), float(observed.mean()), float(observed.std())
            else:  # missing in every training row: the indicator is all the model can use
                median, mean, std = 0.0, 0.0, 1.0
            if not standardize:
                mean, std = 0.0, 1.0
            record.update(median=median, mean=mean, std=std if std > 0 and math.isfinite(std) else 1.0,
                          indicator=bool(missing.any()))
        fitted.append(record)
    return fitted
