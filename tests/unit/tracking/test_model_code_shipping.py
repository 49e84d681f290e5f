"""A custom model's own code ships inside its logged MLflow model: ``mlflow.pyfunc.load_model``
and ``mlflow models serve`` load it in a process that has neither the user's package nor
gapline, and a model without the user's layers ships only gapline's loader beside what
``mlflow.keras`` writes.

Real MLflow throughout: a sqlite store under a temp folder, fresh subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from helpers.pipeline_run import mlflow_uri
from helpers.processes import BIN
from helpers.serving import models_serve

PACKAGE = "shipped_layers"
NAME = "shipped-custom"

# The user's package: a registered layer with two sublayers and a get_config.
BLOCKS = textwrap.dedent(
    '''
    import keras


    @keras.saving.register_keras_serializable(package="shipped_layers")
    class GatedBlock(keras.layers.Layer):
        """tanh(dense(x)) * sigmoid(gate(x)) * scale."""

        def __init__(self, units, scale=2.0, **kwargs):
            super().__init__(**kwargs)
            self.units, self.scale = units, scale
            self.dense = keras.layers.Dense(units, activation="tanh")
            self.gate = keras.layers.Dense(units, activation="sigmoid")

        def build(self, input_shape):
            self.dense.build(input_shape)
            self.gate.build(input_shape)

        def call(self, x):
            return self.dense(x) * self.gate(x) * self.scale

        def get_config(self):
            return {**super().get_config(), "units": self.units, "scale": self.scale}
    '''
)

# Run in a fresh process whose PYTHONPATH holds only a stand-in gapline that refuses to import.
LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras, mlflow

    model = mlflow.pyfunc.load_model(f"models:/{sys.argv[1]}/1")
    pred = model.predict(np.load(sys.argv[2]))
    print(json.dumps({
        "pred": np.asarray(pred).tolist(),
        "raw_is_keras": isinstance(model.get_raw_model(), keras.Model),
        "blocks": sys.modules["shipped_layers.blocks"].__file__,
        "gapline_layers": sys.modules["_gapline_layers"].__file__,
        "gapline": "gapline.layers" in sys.modules,
    }))
    """
)


@dataclass
class Shipped:
    uri: str
    root: Path
    x: np.ndarray
    expected: np.ndarray
    version: str
    registry_pred: np.ndarray
    path_unchanged: bool
    loader_left_imported: bool


def _store(root: Path, experiment: str) -> str:
    """A sqlite store with artifacts under ``root`` (not in the working directory); the active
    experiment is ``experiment``."""
    import mlflow

    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
    return mlflow.set_experiment(experiment).experiment_id


def _model_dir(uri: str, name: str, version: str, dst: Path) -> Path:
    import mlflow

    with mlflow_uri(uri):
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst)))


def _no_user_code_env(root: Path, uri: str) -> dict[str, str]:
    """The environment of a machine without the user's checkout or gapline: no PYTHONPATH but
    a stand-in ``gapline`` that refuses to import (the venv has gapline installed)."""
    stub = root / "no-gapline" / "gapline"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text('raise ImportError("gapline is not installed on this machine")\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=str(stub.parent), MLFLOW_TRACKING_URI=uri, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return env


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    """The user's package written and imported, a model built from it (and a gapline layer),
    logged and registered through gapline.tracking.log_model; then the package is deleted and
    forgotten (sys.path, sys.modules, Keras's registry) before any test runs."""
    import keras
    import mlflow

    from gapline import tracking
    from gapline.layers import NoisyDense

    root = tmp_path_factory.mktemp("code-shipping")
    project = root / "project"
    package = project / PACKAGE
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "blocks.py").write_text(BLOCKS)
    (package / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"not shipped")
    uri = f"sqlite:///{root / 'store.db'}"
    sys.path.insert(0, str(project))
    bytecode = sys.dont_write_bytecode
    try:
        from shipped_layers.blocks import GatedBlock  # type: ignore[import-not-found]

        keras.utils.set_random_seed(3)
        inputs = keras.Input((4,))
        outputs = NoisyDense(3, weight_noise=0.05, activation="softmax")(GatedBlock(6, name="gated")(inputs))
        model = keras.Model(inputs, outputs)
        x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
        expected = model.predict(x, verbose=0)
        path_before, loader_before = list(sys.path), sys.modules.get("_gapline_loader")
        sys.dont_write_bytecode = False  # as on a user's machine: logging must not ship bytecode
        with mlflow_uri(uri):
            _store(root, "code-shipping")
            with mlflow.start_run():
                version = tracking.log_model(model, x[:2], NAME)
            assert version is not None
            sys.dont_write_bytecode = bytecode
            path_unchanged = sys.path == path_before
            loader_left = sys.modules.get("_gapline_loader") is not loader_before
            registry_pred = tracking.load_registered_keras(NAME, version).predict(x, verbose=0)
    finally:
        sys.dont_write_bytecode = bytecode
        sys.path.remove(str(project))
        for module in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[module]
        keras.saving.get_custom_objects().pop(f"{PACKAGE}>GatedBlock", None)
        shutil.rmtree(project)
    return Shipped(uri, root, x, expected, version, registry_pred, path_unchanged, loader_left)


def test_logged_model_holds_the_package_and_a_loader(shipped: Shipped, tmp_path: Path) -> None:
    from mlflow.models import Model

    local = _model_dir(shipped.uri, NAME, shipped.version, tmp_path)
    pyfunc = Model.load(str(local / "MLmodel")).flavors["python_function"]
    assert pyfunc["loader_module"] == "_gapline_loader" and pyfunc["code"] == "code"
    assert pyfunc["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    files = {p.relative_to(local / "code").as_posix() for p in (local / "code").rglob("*") if p.is_file()}
    assert files == {
        "shipped_layers/__init__.py",
        "shipped_layers/blocks.py",
        "_gapline_layers.py",
        "_gapline_loader.py",
        "_gapline_modules.json",
    }
    manifest = json.loads((local / "code" / "_gapline_modules.json").read_text())
    assert manifest == {"imports": [["shipped_layers.blocks", None], ["gapline.layers", "_gapline_layers"]]}
    assert (local / "data" / "model.keras").is_file()
    # logging left no trace in this process: MLflow's temporary code/ folder is off sys.path
    assert shipped.path_unchanged and not shipped.loader_left_imported
    # gapline's own registry loader still loads it (from the user's project, while it was there)
    np.testing.assert_allclose(shipped.registry_pred, shipped.expected, rtol=1e-5, atol=1e-6)


def test_pyfunc_loads_and_predicts_without_the_users_package_or_gapline(shipped: Shipped, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    np.save(tmp_path / "x.npy", shipped.x)
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), NAME, str(tmp_path / "x.npy")],
        cwd=elsewhere, env=_no_user_code_env(tmp_path, shipped.uri), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.array(out["pred"]), shipped.expected, rtol=1e-5, atol=1e-6)
    assert out["raw_is_keras"] and not out["gapline"]
    assert out["blocks"].endswith("code/shipped_layers/blocks.py")
    assert out["gapline_layers"].endswith("code/_gapline_layers.py")


def test_a_model_without_user_layers_ships_the_loader_and_else_what_mlflow_keras_writes(
    shipped: Shipped, tmp_path: Path
) -> None:
    """Plain Keras layers, or gapline's own layers alone: code/ holds gapline's loader (the
    input contract's check and a quiet predict) and, for gapline's layers, their stand-in; the
    other files and the pyfunc flavor's other keys are those ``mlflow.keras.save_model`` writes."""
    import keras
    import mlflow
    from mlflow.models import Model, infer_signature

    from gapline import tracking
    from gapline.layers import NoisyDense
    from gapline.tracking.keras_model import model_requirements

    x = np.ones((2, 4), dtype="float32")
    for name, layer, code in (
        ("plain", keras.layers.Dense(3), {"_gapline_loader.py", "_gapline_modules.json"}),
        ("noisy", NoisyDense(3, weight_noise=0.1), {"_gapline_loader.py", "_gapline_modules.json", "_gapline_layers.py"}),
    ):
        inputs = keras.Input((4,))
        model = keras.Model(inputs, layer(inputs))
        with mlflow_uri(shipped.uri):
            _store(shipped.root, "ordinary")
            with mlflow.start_run():
                version = tracking.log_model(model, x, name)
        assert version is not None
        local = _model_dir(shipped.uri, name, version, tmp_path / name)
        reference = tmp_path / f"{name}-reference"
        reference.mkdir()  # mlflow issue 16183, as in gapline's flavor
        mlflow.keras.save_model(
            model, str(reference), signature=infer_signature(x, model.predict(x, verbose=0)),
            input_example=x, pip_requirements=model_requirements(),
        )
        pyfunc = Model.load(str(local / "MLmodel")).flavors["python_function"]
        expected = {**Model.load(str(reference / "MLmodel")).flavors["python_function"], "loader_module": "_gapline_loader", "code": "code"}
        assert pyfunc == expected
        listing = {p.relative_to(local).as_posix() for p in local.rglob("*")} - {"registered_model_meta"}
        shipped_code = {"code", *(f"code/{f}" for f in code)}
        assert listing - shipped_code == {p.relative_to(reference).as_posix() for p in reference.rglob("*")}, name
        assert shipped_code <= listing, name
        manifest = json.loads((local / "code" / "_gapline_modules.json").read_text())["imports"]
        assert manifest == ([] if name == "plain" else [["gapline.layers", "_gapline_layers"]])
        np.testing.assert_allclose(mlflow.pyfunc.load_model(str(local)).predict(x), model.predict(x, verbose=0), rtol=1e-6)


def _http(url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - local only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
def test_mlflow_models_serve_predicts_without_the_users_package_or_gapline(shipped: Shipped, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = tmp_path / "serve.log"
    env = _no_user_code_env(tmp_path, shipped.uri)
    with models_serve(f"models:/{NAME}/{shipped.version}", env, elsewhere, log) as url:
        body = json.dumps({"inputs": shipped.x.tolist()}).encode()
        status, answer = _http(f"{url}/invocations", body, timeout=60)
        assert status == 200, answer[-2000:]
        pred = np.array(json.loads(answer)["predictions"])
        np.testing.assert_allclose(pred, shipped.expected, rtol=1e-5, atol=1e-6)
