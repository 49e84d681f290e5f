"""Classical baselines that put the study's networks in perspective: an RBF SVC and a
logistic regression, fit on the very same split the arms train on."""

from __future__ import annotations

import time
from typing import Any

from ..config import Config


def classical_baselines(cfg: Config) -> list[dict[str, Any]]:
    """RBF SVC and logistic regression on the very same (flattened) split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    from ..data.prepare import split_source

    splits, _ = split_source(cfg)
    flat = {n: (a["x"].reshape(len(a["x"]), -1), a["y"]) for n, a in splits.items()}
    rows = []
    for name, model in (
        ("svc_rbf (classical)", SVC(kernel="rbf")),  # scikit-learn defaults, as users run it
        ("logistic_regression (classical)", LogisticRegression(max_iter=5000)),
    ):
        start = time.perf_counter()
        model.fit(*flat["train"])
        seconds = time.perf_counter() - start
        acc = {n: float(model.score(x, y)) for n, (x, y) in flat.items()}
        rows.append(
            {
                "arm": name,
                "kind": "classical",
                "test_accuracy": acc["test"],
                "val_accuracy": acc["val"],
                "train_accuracy": acc["train"],
                "gap_accuracy_test": acc["train"] - acc["test"],
                "gap_accuracy_val": acc["train"] - acc["val"],
                "train_seconds": seconds,
            }
        )
    return rows
