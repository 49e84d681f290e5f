"""What ``gapline tune`` leaves behind: the winner as a preset (conf/experiment/tuned_<name>.yaml)
that ``gapline params experiment=tuned_<name>`` and ``dvc repro`` use, and every trial's
numbers (trials.csv)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gapline.core.errors import ConfigError, bad_value
from gapline.core.files import write_text
from gapline.experiments.tune import TuneResult, iter_rows

#: Overrides that say how a run is tracked or searched, not what it trains: not in a preset.
NOT_IN_PRESET = ("tune.", "tracking.", "hydra.", "study.", "sweep.", "retrain.")


def preset_path(root: Path, name: str) -> Path:
    return root / "conf" / "experiment" / f"tuned_{name}.yaml"


def preset_text(base: Sequence[str], point: Sequence[str], conf: Path, header: Sequence[str]) -> str:
    """A ``# @package _global_`` preset: the base overrides' group choices as ``override`` (an
    ``experiment=`` one as an include) and their values, then the chosen point's values."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parser = OverridesParser.create()
    groups: list[str] = []
    values: list[str] = []
    for text in [*base, *point]:
        override = parser.parse_override(text)
        key = override.key_or_group
        if key.startswith(NOT_IN_PRESET) or key in ("tune", "tracking", "hydra"):
            continue
        if override.is_delete():
            raise ConfigError(bad_value("overrides", text, "key=value or group=option (a deletion cannot go into a preset)"))
        value = override.get_value_element_as_str()
        if (conf / key).is_dir():
            groups.append(f"/{key}/{value}" if key == "experiment" else f"override /{key}: {value}")
        else:
            values.append(f"{key}={value}")
    tree = OmegaConf.to_container(OmegaConf.from_dotlist(values)) if values else {}
    lines = ["# @package _global_"]  # first: Hydra reads the directive from the header's top
    lines += [f"# {line}" for line in header]
    if groups:
        lines.append("defaults:")
        lines += [f"  - {g}" for g in groups]
    body = OmegaConf.to_yaml(OmegaConf.create(tree)) if tree else ""
    return "\n".join(lines) + "\n" + body


def write_preset(result: TuneResult, base: Sequence[str], root: Path, command: str) -> Path:
    """conf/experiment/tuned_<name>.yaml for the best trial (the defaults, if none beat them)."""
    best, defaults = result.best, result.defaults
    trained = len(result.trials)
    header = [
        f"Written by `{command}`: the best of {trained} trials and the defaults on validation",
        f"({result.objective} {best.objective:.6g}; the defaults {defaults.objective:.6g}, gain {result.gain:+.6g}).",
        f"Every trial: {_shown(result.out_dir / 'trials.csv', root)}. The same command resumes or redoes it.",
    ]
    path = preset_path(root, result.name)
    write_text(path, preset_text(base, best.point, root / "conf", header))
    return path


def _shown(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def trials_csv(result: TuneResult, path: Path) -> Path:
    buf = io.StringIO()
    rows = list(iter_rows(result))
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())
    return path


def table_text(result: TuneResult) -> str:
    """The trials' table as the command prints it (best marked), then the gain."""
    head = result.headline
    out = [f"| trial | point | {result.objective} | val {head} | gap on {head} (train - val) | epochs | seconds |",
           "|---|---|---|---|---|---|---|"]
    for row in iter_rows(result):
        mark = " **best**" if row["best"] else ""
        cached = " (cached)" if row["cached"] else ""
        out.append(
            f"| {row['trial']}{mark} | {row['point']} | {_num(row['objective'])} | {_num(row[f'val_{head}'])} | "
            f"{_num(row[f'gap_{head}_val'], sign=True)} | {row['epochs_run']} | {row['seconds']:.0f}{cached} |"
        )
    best = result.best
    out.append("")
    if best.number == 0:
        out.append(f"No trial beat the defaults on validation ({result.objective} {result.defaults.objective:.4f}).")
    else:
        out.append(
            f"Best: trial {best.number}, {result.objective} {best.objective:.4f} on validation against "
            f"{result.defaults.objective:.4f} for the defaults (gain {result.gain:+.4f}; val {head} "
            f"{_num(best.record.get(f'val_{head}', math.nan))} against {_num(result.defaults.record.get(f'val_{head}', math.nan))})."
        )
    return "\n".join(out) + "\n"


def _num(value: Any, sign: bool = False) -> str:
    value = float(value)
    if not math.isfinite(value):
        return "nan"
    return f"{value:+.4f}" if sign else f"{value:.4f}"
