"""The whole pipeline through real DVC and a real MLflow store, in a throwaway copy of the repo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers.processes import gapline_in_process, in_process

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``dvc ...`` in this process (its stages too), against the project's own store."""
    return in_process(args, cwd, {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}, check)


def _stages_run(proc: subprocess.CompletedProcess) -> set[str]:
    text = proc.stdout + proc.stderr
    return {line.split("'")[1] for line in text.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the repo (sources only, no outputs, no DVC cache) under git."""
    from helpers.sandbox import copy_project

    root = copy_project(tmp_path_factory.mktemp("e2e") / "repo")
    gapline_in_process(["params", "experiment=debug"], root)
    return root


def _metrics(root: Path) -> dict:
    return json.loads((root / "reports/metrics.json").read_text())


def test_repro_builds_everything_and_logs_one_finished_run(project: Path) -> None:
    proc = _run(["dvc", "repro"], project)
    assert _stages_run(proc) == {"config", "prepare", "augment", "train", "evaluate"}
    for rel in (
        "data/prepared/train/x.npy",
        "data/prepared/train/y.npy",
        "data/prepared/meta.json",
        "data/augmented/train/x.npy",
        "models/model.keras",
        "dvclive/metrics.json",
        "dvclive/plots/metrics/gap/headline.tsv",
        "reports/diagnosis.md",
        "reports/plots/gap_curve.png",
        "reports/plots/learning_curves.png",
        "reports/plots/confusion_matrix.png",
    ):
        assert (project / rel).is_file(), rel
    m = _metrics(project)
    for split in ("train", "val", "test"):
        assert 0.0 <= m[f"{split}_accuracy"] <= 1.0
        assert m[f"{split}_loss"] > 0.0
    assert m["gap_accuracy_val"] == pytest.approx(m["train_accuracy"] - m["val_accuracy"], abs=2e-6)
    assert m["gap_loss_test"] == pytest.approx(m["test_loss"] - m["train_loss"], abs=2e-6)
    assert m["epochs_run"] == 3

    from mlflow import MlflowClient

    record = json.loads((project / "reports/mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "3"
    assert run.data.params["regularization.early_stopping.patience"] == "15"
    assert run.data.metrics["test_accuracy"] == pytest.approx(m["test_accuracy"], abs=1e-6)
    gaps = client.get_metric_history(run.info.run_id, "gap_accuracy")
    assert [g.step for g in gaps] == [1, 2, 3]
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert run.data.tags["data.fingerprint"] == meta["fingerprint"]

    # dvc metrics/plots read what the pipeline declared
    shown = _run(["dvc", "metrics", "show", "--json"], project)
    assert "gap_accuracy_val" in shown.stdout
    assert json.loads(shown.stdout)[""]["data"]["dvclive/metrics.json"]["data"]["gap"]["headline"] == pytest.approx(
        m["gap_accuracy_val"], abs=1e-6
    )  # DVCLive's last epoch: the validation gap evaluate reports
    plots = json.loads(_run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    series = {
        "loss": {"train_eval/loss.tsv", "eval/loss.tsv", "gap/loss.tsv"},
        "accuracy": {"train_eval/headline.tsv", "eval/headline.tsv"},
        "gap": {None},
    }
    for name, files in series.items():  # the three plots, each with its curves, every epoch
        (plot,) = plots[name]
        values = plot["content"]["data"]["values"]
        assert {v.get("filename") for v in values} == files, name
        assert sorted(int(v["step"]) for v in values) == sorted([1, 2, 3] * len(files)), name


def test_unchanged_tree_does_nothing(project: Path) -> None:
    proc = _run(["dvc", "repro"], project)
    assert _stages_run(proc) == set()
    # a user's own data under data/raw/ is no dependency of the built-in digits
    (project / "data/raw/houses.csv").write_text("a,label\n1,2\n")
    try:
        assert _stages_run(_run(["dvc", "repro"], project)) == set()
    finally:
        (project / "data/raw/houses.csv").unlink()


def test_changing_epochs_reruns_only_train_and_evaluate(project: Path) -> None:
    gapline_in_process(["params", "experiment=debug", "train.epochs=4"], project)
    proc = _run(["dvc", "repro"], project)
    assert _stages_run(proc) == {"config", "train", "evaluate"}
    assert _metrics(project)["epochs_run"] == 4


def test_forced_rerun_reproduces_metrics_exactly(project: Path) -> None:
    before = (project / "reports/metrics.json").read_bytes()
    model_before = (project / "models/model.keras").read_bytes()
    proc = _run(["dvc", "repro", "--force"], project)
    assert "train" in _stages_run(proc)
    assert (project / "reports/metrics.json").read_bytes() == before
    assert (project / "models/model.keras").read_bytes() == model_before  # bit for bit


def test_edit_under_conf_is_never_silently_ignored(project: Path) -> None:
    before = (project / "reports/metrics.json").read_bytes()
    conf = project / "conf/train/default.yaml"
    original = conf.read_text()
    conf.write_text(original.replace("learning_rate: 0.001", "learning_rate: 0.002"))
    try:
        proc = _run(["dvc", "repro"], project, check=False)
        assert proc.returncode != 0
        err = proc.stdout + proc.stderr
        assert "conf/ was edited after params.yaml was composed" in err
        assert "gapline params" in err
        assert _stages_run(proc) == {"config"}
        assert (project / "reports/metrics.json").read_bytes() == before
    finally:
        conf.write_text(original)
    gapline_in_process(["params", "experiment=debug", "train.epochs=4"], project)
    assert _stages_run(_run(["dvc", "repro"], project)) <= {"config"}


def test_dvc_exp_run_composes_conf_with_overrides(project: Path) -> None:
    proc = _run(
        ["dvc", "exp", "run", "-S", "experiment=debug", "-S", "regularization=dropout", "-S", "train.epochs=2"],
        project,
    )
    assert "train" in _stages_run(proc)
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["regularization"]["dropout"] == 0.3
    assert params["train"]["epochs"] == 2
    assert params["meta"]["conf_digest"]  # stamped by DVC's composition through hydra_plugins
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project).stdout)
    assert "gap_accuracy_val" in json.dumps(shown)

    bad = _run(["dvc", "exp", "run", "-S", "train.epochs=abc"], project, check=False)
    assert bad.returncode != 0
    assert "train.epochs" in bad.stdout + bad.stderr


def test_code_edit_reruns_the_stages_that_import_it(project: Path) -> None:
    """dvc.yaml's code deps are each stage's import closure (tests/repo/test_stage_deps.py): an edit
    to a module only train imports (the backup, inside the package folder train depends on)
    reruns train, and evaluate after it (the new MLflow run gets its test metrics) although
    the model is the same."""
    _run(["dvc", "repro"], project)
    backup = project / "src/gapline/train/resume.py"
    original = backup.read_text()
    model_before = (project / "models/model.keras").read_bytes()
    backup.write_text(original + "\n# an edit\n")
    try:
        status = json.loads(_run(["dvc", "status", "--json"], project).stdout)
        assert status == {"train": [{"changed deps": {"src/gapline/train": "modified"}}]}
        proc = _run(["dvc", "repro"], project)
        assert _stages_run(proc) == {"train", "evaluate"}
        assert (project / "models/model.keras").read_bytes() == model_before
        assert _stages_run(_run(["dvc", "repro"], project)) == set()
    finally:
        # The comment changed nothing the stage wrote: record the original code as train's
        # dependency again (dvc commit) rather than train once more to the same bytes.
        backup.write_text(original)
        _run(["dvc", "commit", "--force", "train"], project)
        assert _stages_run(_run(["dvc", "repro"], project)) == set()


def test_fresh_clone_reproduces_the_committed_outputs_and_leaves_git_clean(tmp_path: Path) -> None:
    """`make pipeline` on a fresh clone rebuilds the committed model bit for bit and leaves
    `git status` clean: dvc.lock and the committed reports match, and the MLflow run id is
    local state, not a DVC output."""
    from mlflow import MlflowClient

    from helpers.processes import run
    from helpers.sandbox import copy_project

    clone = copy_project(tmp_path / "clone", keep_outputs=True)
    proc = _run(["dvc", "repro"], clone)
    # config's committed marker is current; the rest is not in the clone (or, for evaluate,
    # belongs to a run that is not in this clone's store)
    assert {"prepare", "augment", "train", "evaluate"} <= _stages_run(proc)
    record = json.loads((clone / "reports/mlflow_run.json").read_text())
    logged = MlflowClient(tracking_uri=f"sqlite:///{clone / 'mlflow.db'}").get_run(record["run_id"])
    assert "test_accuracy" in logged.data.metrics  # the clone's one run is complete
    dirty = run(["git", "status", "--porcelain"], clone).stdout
    assert dirty == "", f"a fresh clone's pipeline changed tracked files (refresh dvc.lock with `dvc repro`):\n{dirty}"
