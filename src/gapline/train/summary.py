"""A fit's typed summary: what the train stage writes to ``reports/train.json``, evaluate
reads back, and a trial reports beside its scores (one writer, one reader).

It holds only what the model determines (no timing, no resume point), so the file is
byte-identical whenever the model is and DVC does not rerun evaluate for nothing. It imports
no training code: the evaluate stage reads it without depending on the fit loop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapline.core.errors import DataError
from gapline.core.files import read_json, write_json
from gapline.models.regularization import label


@dataclass(frozen=True)
class FitSummary:
    """A fit as reports/train.json records it."""

    task: str  # multiclass, binary, multilabel or regression
    epochs_run: int
    best_epoch: int
    onset_epoch: int | None  # None: the gap never started to grow
    params: int
    train_samples: int  # the training split, before augmentation
    fit_samples: int  # what the model was fit on: the split and its augmented copies
    techniques: list[str]  # what was really applied (a custom model's weight sharing is read from it)
    warm_start: dict[str, Any] | None = None  # what model.init_from copied (warm_start.train_info)

    @property
    def technique_label(self) -> str:
        return label(self.techniques)

    def metrics(self) -> dict[str, int]:
        """The fit's numbers beside the scores (metrics.json, a trial's row): ``onset_epoch``
        -1 when the gap never started to grow."""
        return {
            "best_epoch": self.best_epoch,
            "onset_epoch": self.onset_epoch if self.onset_epoch is not None else -1,
            "epochs_run": self.epochs_run,
            "params": self.params,
        }

    def write(self, path: Path) -> None:
        record = dataclasses.asdict(self)
        if self.warm_start is None:
            del record["warm_start"]
        write_json(path, record)

    @classmethod
    def read(cls, path: Path) -> FitSummary:
        record = read_json(path)
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(record) - {"warm_start"})
        if missing:
            raise DataError(f"{path}: missing {', '.join(missing)}; expected the train stage's summary (rerun `dvc repro train`)")
        return cls(**{k: v for k, v in record.items() if k in names})
