"""The plain-words diagnosis: verdicts and the failure patterns it flags."""

from gapline.evaluate.diagnosis import as_markdown, diagnose


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


def test_regression_is_judged_on_rmse_relative_to_the_train_error() -> None:
    from gapline.config.tasks import TaskSpec

    task = TaskSpec("regression", ("price",))

    def m(train_rmse: float, val_rmse: float, train_r2: float = 0.9) -> dict:
        return {"train_rmse": train_rmse, "val_rmse": val_rmse, "gap_rmse_val": val_rmse - train_rmse,
                "train_r2": train_r2, "gap_loss_val": 0.1}

    over = diagnose(m(10.0, 60.0), task, onset_epoch=40, used=["l2"])
    assert over["verdict"] == "overfitting"
    assert "RMSE 10 vs validation 60" in over["text"] and "+500% of the train error" in over["text"]
    assert "label_smoothing" not in over["text"]  # nothing to smooth in a regression
    assert diagnose(m(50.0, 55.0), task, None, [])["verdict"] == "good fit"  # 10 % above train
    assert diagnose(m(50.0, 52.0, train_r2=0.3), task, None, [])["verdict"] == "underfitting"


def test_binary_is_judged_on_auc_and_overconfidence_is_flagged() -> None:
    from gapline.config.tasks import TaskSpec

    task = TaskSpec("binary", ("benign", "malignant"))
    metrics = {"train_auc": 1.0, "val_auc": 0.95, "gap_auc_val": 0.05, "gap_loss_val": 0.2,
               "train_ece": 0.001, "val_ece": 0.09}
    d = diagnose(metrics, task, None, [])
    assert d["verdict"] == "overfitting" and "train AUC 100.0% vs validation 95.0%" in d["text"]
    assert any("overconfident" in f and "0.090" in f for f in d["flags"])
    calibrated = {**metrics, "val_ece": 0.02}
    assert not any("overconfident" in f for f in diagnose(calibrated, task, None, [])["flags"])


def test_a_good_fit_with_an_onset_says_what_the_onset_means() -> None:
    """Binary and multilabel runs reported `onset 12` beside "Good fit": the text says why."""
    from gapline.config.tasks import TaskSpec

    metrics = {"train_auc": 0.99, "val_auc": 0.985, "gap_auc_val": 0.005, "gap_loss_val": 0.04, "train_loss": 0.1, "val_loss": 0.14}
    d = diagnose(metrics, TaskSpec("binary", ("no", "yes")), 12, ["early_stopping"])
    assert d["verdict"] == "good fit"
    assert "lowest at epoch 12" in d["text"] and "onset epoch" in d["text"]
    assert "a gap of at most 3 points and a loss gap of at most 0.1" in d["text"]
    assert "onset" not in diagnose(metrics, TaskSpec("binary", ("no", "yes")), None, ["early_stopping"])["text"]
