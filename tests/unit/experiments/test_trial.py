"""TrialResult: the flat row and the job record that tables, caches and MLflow children read."""

from __future__ import annotations

from gapline.experiments.trial import TrialResult

METRICS = {
    "train_loss": 0.1, "train_accuracy": 0.99, "val_loss": 0.3, "val_accuracy": 0.9,
    "test_loss": 0.35, "test_accuracy": 0.88, "gap_accuracy_val": 0.09, "gap_loss_val": 0.2,
    "gap_accuracy_test": 0.11, "gap_loss_test": 0.25,
}


def _result() -> TrialResult:
    return TrialResult(
        metrics=dict(METRICS), task="multiclass", techniques="l2", train_samples=200, fit_samples=400, epochs_run=3,
        best_epoch=2, onset_epoch=-1, params={"params": 1000, "params_untied": 1200},
        train_seconds=1.5, fingerprint="sha256:abc", history={"loss": [0.5, 0.3, 0.1]},
    )


def test_row_is_flat_in_the_order_callers_read_and_leaves_out_the_curves() -> None:
    row = _result().row()
    assert list(row) == [
        *METRICS, "task", "techniques", "train_samples", "fit_samples", "epochs_run", "best_epoch",
        "onset_epoch", "params", "params_untied", "train_seconds", "fingerprint",
    ]
    assert row["params"] == 1000 and row["params_untied"] == 1200 and row["onset_epoch"] == -1
    assert row["test_accuracy"] == 0.88 and row["fingerprint"] == "sha256:abc"
    assert "history" not in row and "metrics" not in row


def test_record_puts_identity_first_then_the_row_then_the_curves() -> None:
    result = _result()
    record = result.record(job="l2-s1", arm="l2", kind="arm", seed=1)
    assert list(record)[:4] == ["job", "arm", "kind", "seed"]
    assert {k: record[k] for k in result.row()} == result.row()
    assert record["history"] == {"loss": [0.5, 0.3, 0.1]} and list(record)[-1] == "history"
