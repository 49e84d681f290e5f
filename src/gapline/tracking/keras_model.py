"""Keras models in and out of MLflow: logging the trained model (signature, input example,
pinned requirements, and a custom model's own code: :mod:`.model_code`) and registering it as
``challenger``; loading a registered version.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gapline.core.errors import GaplineError
from gapline.models.saving import load_model
from gapline.tracking.input_contract import METADATA_KEY, to_served
from gapline.tracking.log import retry_on_conflict
from gapline.tracking.model_code import LOADER, ship_code
from gapline.tracking.redaction import error_text
from gapline.tracking.runs import flush
from gapline.tracking.store import TrackingError, import_mlflow

# Where mlflow.keras.log_model (the Keras 3 flavor) puts the .keras file inside a logged model.
MODEL_DATA_PATH = "data/model.keras"

ALIAS = "challenger"


def model_requirements() -> list[str]:
    """Pinned pip requirements of a logged Keras model: keras and its backend.

    Giving them saves MLflow's requirement inference, which loads the model in a subprocess
    (about 5 s per run) and falls back to ``keras`` alone with a warning anyway.
    """

    import keras

    reqs = [f"keras=={keras.__version__}"]
    dists = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}
    for dist in dists.get(keras.backend.backend(), ()):
        with contextlib.suppress(md.PackageNotFoundError):
            reqs.append(f"{dist}=={md.version(dist)}")
    return reqs


class _KerasFlavor:
    """``mlflow.keras`` for ``Model.log``, except that the model folder exists before the
    input example is written into it (mlflow issue 16183, still open in 3.17: with
    ``input_example``, ``mlflow.keras.log_model`` fails with FileNotFoundError), and that the
    model ships gapline's loader and the user's own layers (:func:`.model_code.ship_code`)."""

    __name__ = "mlflow.keras"

    def __init__(self, model_file: Path | None = None) -> None:
        self.model_file = model_file

    def save_model(self, path: str, **kwargs: Any) -> Any:
        os.makedirs(path, exist_ok=True)
        signature, columns = kwargs.get("signature"), None
        if signature is not None and not all(type(f).__name__ == "TensorSpec" for f in signature.inputs.inputs):
            # a table's column schema: mlflow.keras takes tensor schemas only, so the signature
            # goes on after the save (the loader, not Keras, reads the columns)
            columns = kwargs.pop("signature")
        with _quiet_logger("mlflow.keras.save") if columns is not None else contextlib.nullcontext():
            saved = import_mlflow().keras.save_model(path=path, **kwargs)
        if columns is not None and kwargs.get("mlflow_model") is not None:
            kwargs["mlflow_model"].signature = columns
        if self.model_file is not None:
            # the very bytes DVC tracks (a second save differs in its zip's dates): the registry's
            # model and `dvc pull`'s models/model.keras are one file, checkable by md5
            shutil.copyfile(self.model_file, Path(path) / MODEL_DATA_PATH)
        ship_code(kwargs["model"], path, kwargs.get("mlflow_model"))
        return saved


@contextlib.contextmanager
def _no_trace_of_shipped_code() -> Iterator[None]:
    """``Model.log`` checks the input example by loading the saved model: with shipped code,
    MLflow puts the temporary ``code/`` folder on ``sys.path`` and imports the loader from it
    (writing its bytecode into the folder about to be logged). Put both back, write no
    bytecode."""
    path, loader, no_bytecode = list(sys.path), sys.modules.get(LOADER), sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.path[:] = path
        sys.dont_write_bytecode = no_bytecode
        if loader is None:
            sys.modules.pop(LOADER, None)
        else:
            sys.modules[LOADER] = loader


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """``name``'s warnings held back (mlflow.keras warns of a missing signature that gapline
    adds right after the save)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _quiet_keras() -> Iterator[None]:
    import keras

    was_on = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was_on:
            keras.config.enable_interactive_logging()


def log_model(
    model: Any, x_sample: Any, registered_model: str | None, contract: dict[str, Any] | None = None,
    model_file: Path | None = None,
) -> str | None:
    """Log the Keras model (Keras flavor) with a signature and an input example; register it
    and point the alias ``challenger`` at the new version. Returns the registered version.

    ``contract`` (:func:`gapline.tracking.input_contract.input_contract`) is what the served model takes:
    ``x_sample`` (stored rows) is logged in that representation, the loader checks every input
    against it, and the version's description states it. None: the model takes what Keras
    takes, unchecked. ``model_file``: the file ``model`` was saved to, logged as it is."""
    mlflow = import_mlflow()
    from mlflow.models import Model, infer_signature

    flush()  # Model.log copies the run's params onto the logged model: they must have landed
    example = to_served(x_sample, contract) if contract else x_sample
    signature = infer_signature(example, model.predict(x_sample, verbose=0))
    if contract and contract.get("table"):
        signature = _cells_may_be_missing(signature)
    # MLflow checks the input example with a verbose predict
    with _quiet_keras(), _no_trace_of_shipped_code():
        info = Model.log(
            artifact_path=None,
            name="model",
            flavor=_KerasFlavor(model_file),
            model=model,
            signature=signature,
            input_example=example,
            metadata={METADATA_KEY: contract} if contract else None,
            pip_requirements=model_requirements(),
            registered_model_name=registered_model or None,
        )
    version = getattr(info, "registered_model_version", None)
    if registered_model and version is not None:
        client = mlflow.MlflowClient()
        # The store inserts an alias it does not find, without a lock: two trainings that
        # register at once both insert, and the second fails on the unique constraint. Tried
        # again, it finds the alias and moves it (to the later version, as when one by one).
        retry_on_conflict(lambda: client.set_registered_model_alias(registered_model, ALIAS, str(version)))
        if contract:
            client.update_model_version(registered_model, str(version), description=contract["description"])
        return str(version)
    return None


def _cells_may_be_missing(signature: Any) -> Any:
    """A table's column schema with every column optional: any cell may be missing (the model
    imputes it), and a request without a column then reaches the loader, whose refusal names
    the column in one line (MLflow's own names every row of the request)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema([ColSpec(type=c.type, name=c.name, required=False) for c in signature.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=signature.outputs, params=signature.params)


def load_registered_keras(name: str, version: str) -> Any:
    """The Keras model of registered version ``name``/``version``, loaded by the one safe
    loader every command uses (:func:`gapline.models.saving.load_model`: ``safe_mode=True``).

    Call :func:`.model_registry.registry` first: the ``models:/`` URI resolves through the
    process-wide store.
    """

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow = import_mlflow()
    where = f"cannot load model {name} v{version} from the registry"
    with tempfile.TemporaryDirectory(prefix="gapline-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp)
        except Exception as exc:  # noqa: BLE001 - missing artifacts surface as several types
            raise TrackingError(f"{where}: {error_text(exc)}") from None
        try:
            with _quiet_keras():
                return load_model(Path(local) / MODEL_DATA_PATH)
        except GaplineError as exc:
            raise TrackingError(f"{where}: {exc}") from None
