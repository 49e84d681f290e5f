"""The record of the pipeline's MLflow run that stages pass on through files.

``reports/mlflow_run.json`` names the run train finished, the model version it registered
and the digest of the model file it wrote: evaluate adds to that run only while
``models/model.keras`` is still that file; retraining judges that version. It is local state
(ignored by git, not a DVC output): a run id differs on every execution, and as an output it
left every fresh clone's ``dvc.lock`` modified although the model reproduced bit for bit.
``.gapline/train_run.json`` names the run while train is still in it: if train is killed,
the next train closes that run as KILLED. One type writes and reads both, so the files keep
the keys they have always had. Where RUN_FILE is absent (a teammate's clone that pulled the
outputs from a DVC remote), :func:`gapline.tracking.runs.find_record` rebuilds the record from
the store, by the model's md5 that train tags its run with.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from gapline.core.errors import DataError
from gapline.core.files import read_json, write_json

RUN_FILE = Path("reports/mlflow_run.json")
# The run tag holding the md5 of the model file train wrote: a workspace without RUN_FILE (a
# clone that ran `dvc pull`) finds the run, and the version it registered, by its model.
MODEL_MD5_TAG = "model.md5"
ACTIVE_RUN_FILE = Path(".gapline/train_run.json")


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run as the files name it; ``run_id`` None when tracking was off."""

    run_id: str | None
    tracking_uri: str | None = None  # canonical (see store.canonical_uri); absent in old records
    experiment_id: str | None = None
    registered_model: str | None = None
    model_version: str | None = None  # None when nothing was registered
    model_md5: str | None = None  # of the model file train wrote in this run

    @classmethod
    def no_run(cls) -> RunRecord:
        """Tracking was off: there is no run to add to and no version to judge."""
        return cls(run_id=None)

    @classmethod
    def started(cls, run_id: str, tracking_uri: str) -> RunRecord:
        """A run train is still in: what is needed to close it if train is killed."""
        return cls(run_id=run_id, tracking_uri=tracking_uri)

    def as_json(self) -> dict[str, Any]:
        """All keys for a finished run, the run and its store for a started one, ``run_id`` and
        ``model_version`` (both null) for no run."""
        if self.experiment_id is not None:
            keys = [field.name for field in dataclasses.fields(self)]
        elif self.run_id is not None:
            keys = ["run_id", "tracking_uri"]
        else:
            keys = ["run_id", "model_version"]
        return {key: getattr(self, key) for key in keys}

    def write(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.as_json())

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunRecord:
        """The record in ``path``; keys it lacks (older records) read as None."""
        data = read_json(path)
        if not isinstance(data, dict):
            raise DataError(
                f"run record {str(path)!r} holds a JSON {type(data).__name__}: expected an object "
                "with run_id (written by the train stage)"
            )
        return cls(**{field.name: data.get(field.name) for field in dataclasses.fields(cls)})
