"""The plain-words diagnosis: verdicts and the failure patterns it flags."""

from gapline.diagnosis import as_markdown, diagnose


def _m(train_acc: float, val_acc: float, train_loss: float = 0.1, val_loss: float = 0.2) -> dict:
    return {
        "train_accuracy": train_acc,
        "val_accuracy": val_acc,
        "gap_accuracy_val": train_acc - val_acc,
        "gap_loss_val": val_loss - train_loss,
    }


def test_overfitting_names_onset_gap_and_unused_techniques() -> None:
    d = diagnose(_m(1.0, 0.9), 10, onset_epoch=12, used=["l2", "dropout"])
    assert d["verdict"] == "overfitting"
    assert "from epoch 12" in d["text"] and "10.0 points" in d["text"]
    assert "early_stopping" in d["text"] and "augment" in d["text"]
    assert "Not used yet: l2" not in d["text"] and ", dropout" not in d["text"].split("Not used yet:")[1]


def test_good_fit_and_underfitting() -> None:
    assert diagnose(_m(0.99, 0.98), 10, None, [])["verdict"] == "good fit"
    under = diagnose(_m(0.5, 0.48), 10, None, [])
    assert under["verdict"] == "underfitting" and "50.0%" in under["text"]


def test_flags_chance_level_validation_with_high_training_accuracy() -> None:
    d = diagnose(_m(0.99, 0.11), 10, None, ["batch_norm", "early_stopping"], batch_size=2, best_epoch=1, epochs_run=20)
    text = " ".join(d["flags"])
    assert "near chance" in text
    assert "train.batch_size=2" in text
    assert "restored epoch 1 of 20" in as_markdown(d)


def test_no_flags_for_a_healthy_run() -> None:
    d = diagnose(_m(0.99, 0.97), 10, None, ["batch_norm", "early_stopping"], batch_size=32, best_epoch=30, epochs_run=45)
    assert d["flags"] == []
