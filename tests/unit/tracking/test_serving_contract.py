"""A served model takes the source's own representation and refuses anything else.

The built-in digits are stored as 0..240 pixels with a channel axis; the logged model takes
scikit-learn's ``load_digits().images`` as they come (float64 ``(n, 8, 8)``, 0..16), answers
them exactly as the Keras model answers the stored pixels, and refuses pixels times 15, floats
in [0, 1], NaN and the wrong shape with one line that states the contract, both through
``mlflow.pyfunc`` and through ``mlflow models serve`` (HTTP 400, not a wrong 200). No Keras
progress bar reaches the caller's output or the server's log.

Real MLflow throughout: a sqlite store under a temp folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gapline import tracking
from gapline.data.bundled import load_digits
from gapline.data.meta import PreparedMeta
from gapline.tracking import shipped_loader
from gapline.tracking.input_contract import METADATA_KEY, input_contract, to_served
from helpers.pipeline_run import mlflow_uri
from helpers.prepared_meta import make_meta
from helpers.processes import BIN
from helpers.serving import models_serve

NAME = "served-digits"
BAR = "\u2501"  # Keras's progress bar is drawn with this character


@dataclass
class Logged:
    uri: str
    root: Path
    version: str
    contract: dict
    stored: np.ndarray  # the stored representation (0..240, (n, 8, 8, 1))
    expected: np.ndarray  # the Keras model on the stored pixels


def _digits_meta(pixel_max: int) -> PreparedMeta:
    return make_meta(kind="image", source="digits", input_shape=[8, 8, 1], pixel_max=pixel_max)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """A digits model (the stem's pixel scale, then a softmax) logged and registered through
    gapline.tracking.log_model with the contract of the default pipeline's meta."""
    import keras
    import mlflow


    root = tmp_path_factory.mktemp("serving-contract")
    uri = f"sqlite:///{root / 'store.db'}"
    digits = load_digits()
    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1.0 / digits.pixel_max)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x)))
    contract = input_contract(_digits_meta(digits.pixel_max))
    with mlflow_uri(uri):
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("contract", artifact_location=(root / "art").as_uri()))
        with mlflow.start_run():
            version = tracking.log_model(model, digits.x[:2], NAME, contract)
    assert version is not None
    stored = digits.x[:64]
    return Logged(uri, root, version, contract, stored, model.predict(stored, verbose=0))


def _pyfunc(logged: Logged):
    import mlflow

    with mlflow_uri(logged.uri):
        return mlflow.pyfunc.load_model(f"models:/{NAME}/{logged.version}")


def _source_images(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images[:n]


def test_stored_digits_served_as_scikit_learns_images() -> None:
    """The served representation of the stored digits is load_digits().images, bit for bit:
    the contract's scale and gapline's storage agree."""

    digits = load_digits()
    served = to_served(digits.x, input_contract(_digits_meta(digits.pixel_max)))
    np.testing.assert_array_equal(served, _source_images(len(digits.x)))
    assert served.dtype == np.float64 and served.shape == (len(digits.x), 8, 8)


@pytest.mark.parametrize(
    ("meta", "shape", "values"),
    [
        (make_meta(kind="image", source="image_folder", input_shape=[28, 28, 3], pixel_max=255), "(n, 28, 28, 3)", "whole numbers from 0 to 255"),
        (make_meta(kind="image", source="npz", input_shape=[6, 6, 1], pixel_max=0), "(n, 6, 6, 1)", "numbers from 0 to 1"),
        (make_meta(kind="tabular", source="csv", input_shape=[4]), "(n, 4)", "finite numbers"),
    ],
)
def test_contract_of_each_source_kind(meta: PreparedMeta, shape: str, values: str) -> None:
    contract = input_contract(meta)
    assert contract["expected"].startswith(f"a float64 array of shape {shape} holding {values} (")
    assert contract["scale"] == 1 and contract["model_shape"] == meta.input_shape


def test_pyfunc_answers_the_source_images_as_keras_answers_the_stored_pixels(logged: Logged, capfd) -> None:
    model = _pyfunc(logged)
    capfd.readouterr()
    pred = np.asarray(model.predict(_source_images(len(logged.stored))))
    np.testing.assert_allclose(pred, logged.expected, rtol=1e-6, atol=1e-7)
    out, err = capfd.readouterr()
    assert BAR not in out + err, "predict printed Keras's progress bar"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda im: im * 15, "input values range from 0 to 240: expected a float64 array of shape (n, 8, 8) holding whole numbers from 0 to 16"),
        (lambda im: im / 16, "values with a fraction (such as 0.3125): expected a float64 array of shape (n, 8, 8)"),
        (lambda im: np.where(im > 8, np.nan, im), "NaN or infinite values: expected"),
        (lambda im: im - 1, "input values range from -1 to 15: expected"),
    ],
)
def test_pyfunc_refuses_input_outside_the_contract(logged: Logged, make, message: str) -> None:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as info:
        _pyfunc(logged).predict(make(_source_images(8)))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [lambda im: im.astype(np.uint8), lambda im: im[..., np.newaxis]])
def test_pyfunc_refuses_another_dtype_or_shape_by_the_signature(logged: Logged, bad) -> None:
    """MLflow's schema check comes first: the signature states the contract's dtype and shape."""
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="dtype|[Ss]hape"):
        _pyfunc(logged).predict(bad(_source_images(4)))


def test_contract_in_the_mlmodel_the_signature_and_the_version_description(logged: Logged) -> None:
    import mlflow
    from mlflow.models import Model


    assert shipped_loader.CONTRACT_KEY == METADATA_KEY  # the loader cannot import gapline
    with mlflow_uri(logged.uri):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{logged.version}", dst_path=str(logged.root / "dl")))
        description = mlflow.MlflowClient().get_model_version(NAME, logged.version).description
    mlmodel = Model.load(str(local / "MLmodel"))
    assert mlmodel.metadata[METADATA_KEY] == logged.contract
    spec = mlmodel.signature.inputs.to_dict()[0]
    assert spec["tensor-spec"]["dtype"] == "float64" and list(spec["tensor-spec"]["shape"]) == [-1, 8, 8]
    assert description == logged.contract["description"]
    assert description.startswith("Input: a float64 array of shape (n, 8, 8) holding whole numbers from 0 to 16 (scikit-learn's load_digits().images")
    example = json.loads((local / "serving_input_example.json").read_text())["inputs"]
    np.testing.assert_array_equal(np.array(example), _source_images(2))


def _post(url: str, rows: np.ndarray) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    body = json.dumps({"inputs": rows.tolist()}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - local only
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_mlflow_models_serve_enforces_the_contract_over_rest(logged: Logged, tmp_path: Path) -> None:
    """JSON numbers arrive as the signature's float64, so nothing is cast away before the
    loader checks them: floats in [0, 1] get a 400 that says why, not a wrong 200."""
    import os

    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=logged.uri, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # uvicorn, from the venv
    with models_serve(f"models:/{NAME}/{logged.version}", env, tmp_path, log) as url:
        images = _source_images(len(logged.stored))
        status, answer = _post(f"{url}/invocations", images)
        assert status == 200, answer
        np.testing.assert_allclose(np.array(answer["predictions"]), logged.expected, rtol=1e-6, atol=1e-7)
        for rows, words in ((images / 16, "with a fraction"), (images * 15, "range from 0 to 240")):
            status, answer = _post(f"{url}/invocations", rows)
            assert status == 400 and words in answer["message"] and "whole numbers from 0 to 16" in answer["message"], answer
    assert BAR not in log.read_text(errors="replace"), "the server log holds Keras's progress bar"
