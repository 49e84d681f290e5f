"""README's "Your own model" example, as a user runs it: the module copied from the README into
a fresh project, real ``dvc repro``, a real MLflow store, a registered model that loads in a
process without the project, and a builder edit that makes train stale. (A switch the model
cannot honour: tests/unit/models/test_custom_model.py; that such a model error opens no run at all:
tests/unit/tracking/test_tracking.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.processes import gapline_in_process, in_process, run_local

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

OVERRIDES = ["model=custom", "model.builder=my_models.resnet:build", "model.kwargs.width=8", "model.kwargs.depth=1"]


def readme_example() -> str:
    """The first Python block of README's "Your own model" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own model", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's 'Your own model' section has no python example"
    return match.group(1)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.sandbox import copy_project

    root = copy_project(tmp_path_factory.mktemp("custom") / "repo")
    (root / "my_models").mkdir()
    (root / "my_models" / "__init__.py").write_text("")
    (root / "my_models" / "resnet.py").write_text(readme_example())
    gapline_in_process(["params", "experiment=debug", *OVERRIDES], root)
    # In this process; the forced retraining below is a real one, a console script that
    # must find my_models from the project root, and must save the same bytes.
    in_process(["dvc", "repro"], root, {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"})
    return root


def _mlflow(root: Path, code: str, cwd: Path | None = None) -> str:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd or root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_readme_example_trains_through_dvc_into_a_finished_run_with_the_gap(project: Path) -> None:
    record = json.loads((project / "reports/mlflow_run.json").read_text())
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["gap_accuracy_val"] == pytest.approx(metrics["train_accuracy"] - metrics["val_accuracy"], abs=2e-6)
    code = (
        "import json, mlflow; r = mlflow.get_run({!r}); "
        "print(json.dumps({{'status': r.info.status, 'techniques': r.data.tags['techniques'], "
        "'builder': r.data.params['model.builder'], 'gap': 'gap_accuracy_val' in r.data.metrics}}))".format(record["run_id"])
    )
    run = json.loads(_mlflow(project, code))
    assert run["status"] == "FINISHED" and run["gap"] and run["builder"] == "my_models.resnet:build"
    # experiment=debug keeps regularization=standard: L2, dropout (in kit.tail) and early stopping
    assert run["techniques"] == "l2+dropout+early_stopping+weight_sharing"
    assert record["model_version"]


def test_the_registered_model_loads_with_pyfunc_where_the_project_is_not(project: Path, tmp_path: Path) -> None:
    """The user's package travels inside the MLflow model: a process started elsewhere, with
    no my_models on its path, loads and predicts."""
    record = json.loads((project / "reports/mlflow_run.json").read_text())
    uri = f"models:/{record['registered_model']}/{record['model_version']}"
    code = (
        "import sys, numpy as np, mlflow.pyfunc; "
        "assert not any('my_models' in p for p in sys.path); "
        f"m = mlflow.pyfunc.load_model({uri!r}); "
        "p = np.asarray(m.predict(np.zeros((3, 8, 8)))); "  # load_digits().images, as the contract says
        "print(p.shape, round(float(p.sum(axis=1).mean()), 4), 'my_models.resnet' in sys.modules)"
    )
    assert _mlflow(project, code, cwd=tmp_path) == "(3, 10) 1.0 True"


def test_editing_the_builder_makes_train_stale(project: Path) -> None:
    assert "train" not in run_local(["dvc", "status"], project).stdout
    builder = project / "my_models" / "resnet.py"
    before = builder.read_text()
    try:
        builder.write_text(before + "\n# a comment is enough: DVC hashes the package\n")
        status = run_local(["dvc", "status"], project).stdout
        assert "train:" in status and "my_models" in status, status
    finally:
        builder.write_text(before)
    assert "train" not in run_local(["dvc", "status"], project).stdout


def test_training_the_custom_model_again_gives_the_same_bytes(project: Path) -> None:
    from gapline.config.provenance import file_md5

    before = file_md5(project / "models/model.keras")
    run_local(["dvc", "repro", "--force", "--single-item", "train"], project)
    assert file_md5(project / "models/model.keras") == before
