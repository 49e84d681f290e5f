"""Composing the real conf/ and the one-line errors for every kind of bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapline.config.checks import from_container, validate
from gapline.config.params import compose_config
from gapline.config.schema import Config
from gapline.core.errors import ConfigError
from helpers.prepared_meta import make_meta


def _error(overrides: list[str], root: Path) -> str:
    with pytest.raises(ConfigError) as info:
        compose_config(overrides, root=root)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.strip() == msg and msg
    return msg


def test_default_composes_and_validates(repo_root: Path) -> None:
    cfg = compose_config([], root=repo_root)
    assert isinstance(cfg, Config)
    assert validate(cfg) is cfg
    # Values come from the group files, not only from the dataclass defaults.
    assert cfg.data.source == "digits"
    assert cfg.model.family == "mlp" and cfg.model.hidden_units == "auto"  # sized when built: models/sizing.py
    assert cfg.regularization.l2 == pytest.approx(0.0001)
    assert cfg.regularization.dropout == pytest.approx(0.2)
    assert cfg.regularization.early_stopping.enabled is True
    assert cfg.regularization.early_stopping.patience == 15
    assert cfg.train.epochs == 60
    # The digest resolver stamped the config with conf/'s digest.
    assert len(cfg.meta.conf_digest) == 16
    int(cfg.meta.conf_digest, 16)


def test_experiment_debug_is_a_short_run(repo_root: Path) -> None:
    default = compose_config([], root=repo_root)
    debug = compose_config(["experiment=debug"], root=repo_root)
    assert 1 <= debug.train.epochs <= 5
    assert debug.train.epochs < default.train.epochs
    assert debug.model.hidden_units == [32]
    assert debug.data.train_fraction == pytest.approx(0.3)
    assert debug.tracking.experiment == "gapline-debug"


def test_group_choice_and_value_overrides_apply(repo_root: Path) -> None:
    cfg = compose_config(["regularization=dropout", "model=cnn", "train.epochs=5"], root=repo_root)
    assert cfg.regularization.dropout == pytest.approx(0.3)
    assert cfg.regularization.l2 == 0.0
    assert cfg.regularization.early_stopping.enabled is False
    assert cfg.model.family == "cnn"
    assert cfg.train.epochs == 5


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["train.epochz=3"], ["train.epochz", "unknown key", "epochs"]),
        (["train.epochs=abc"], ["train.epochs", "abc"]),
        (["regularization.dropout=1.0"], ["regularization.dropout=1.0", "[0, 1)"]),
        (["regularization.dropout=-0.1"], ["regularization.dropout=-0.1", "[0, 1)"]),
        (["regularization.l2=-0.001"], ["regularization.l2=-0.001"]),
        (["data.train_fraction=0"], ["data.train_fraction=0", "(0, 1]"]),
        (["data.train_fraction=1.5"], ["data.train_fraction=1.5", "(0, 1]"]),
        (["train.epochs=0"], ["train.epochs=0", ">= 1"]),
        (["train.batch_size=0"], ["train.batch_size=0", ">= 1"]),
        (["data.source=foo"], ["data.source='foo'", "digits", "npz", "csv", "image_folder"]),
        (
            ["data.val_fraction=0.5", "data.test_fraction=0.5"],
            ["data.val_fraction+data.test_fraction=1.0", "below 1"],
        ),
        (
            ["data.val_fraction=0.6", "data.test_fraction=0.5"],
            ["data.val_fraction+data.test_fraction=1.1"],
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and "=" in v[0] else None,
)
def test_bad_values_give_one_line_naming_key_and_value(
    repo_root: Path, overrides: list[str], needles: list[str]
) -> None:
    msg = _error(overrides, repo_root)
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.mark.parametrize("override, key", [("train.epochz=3", "train.epochz"), ("train.epochs=abc", "train.epochs")])
def test_the_line_is_the_same_under_a_debugger(repo_root: Path, monkeypatch: pytest.MonkeyPatch, override: str, key: str) -> None:
    """Under a tracer (a debugger, coverage) OmegaConf chains the raw error it formatted, with
    an unfilled "$VALUE" template, behind the formatted one; OC_CAUSE=1 does the same."""
    monkeypatch.setenv("OC_CAUSE", "1")
    msg = _error([override], repo_root)
    assert key in msg and "$VALUE" not in msg, msg


def test_unknown_group_option_lists_available_options(repo_root: Path) -> None:
    msg = _error(["regularization=foo"], repo_root)
    assert "regularization/foo" in msg
    for option in ("none", "standard", "l2", "dropout", "batch_norm", "early_stopping"):
        assert option in msg, (option, msg)


def test_values_at_the_edges_of_their_ranges_are_accepted(repo_root: Path) -> None:
    cfg = compose_config(
        [
            "regularization.dropout=0.0",
            "regularization.l2=0.0",
            "data.train_fraction=1.0",
            "train.epochs=1",
            "train.batch_size=1",
            "data.val_fraction=0.4",
            "data.test_fraction=0.5",
        ],
        root=repo_root,
    )
    assert cfg.train.epochs == 1 and cfg.data.train_fraction == 1.0


def test_appended_unknown_key_is_refused(repo_root: Path) -> None:
    msg = _error(["+train.epochz=3"], repo_root)
    assert "train.epochz" in msg


def test_from_container_reports_typo_in_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        from_container({"train": {"epochz": 3}})
    msg = str(info.value)
    assert "\n" not in msg
    assert "train.epochz" in msg and "epochs" in msg


def test_from_container_reports_top_level_typo() -> None:
    with pytest.raises(ConfigError) as info:
        from_container({"trian": {"epochs": 3}})
    msg = str(info.value)
    assert "\n" not in msg
    assert "trian" in msg and "train" in msg


def test_from_container_accepts_partial_dict_and_range_checks() -> None:
    cfg = from_container({"train": {"epochs": 3}})
    assert cfg.train.epochs == 3 and cfg.train.batch_size == 32
    with pytest.raises(ConfigError, match=r"regularization\.dropout=1\.5"):
        from_container({"regularization": {"dropout": 1.5}})


def test_cli_params_error_is_one_line_and_writes_nothing(
    conf_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gapline.cli import main

    monkeypatch.chdir(conf_project)
    code = main(["params", "train.epochs=0"])
    captured = capsys.readouterr()
    assert code != 0
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert "train.epochs=0" in lines[0]
    assert not (conf_project / "params.yaml").exists()


def test_cli_params_writes_into_the_working_project(
    conf_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gapline.cli import main
    from gapline.config.params import load_params

    monkeypatch.chdir(conf_project)
    assert main(["params", "train.epochs=4"]) == 0
    assert capsys.readouterr().err == ""
    cfg = load_params(conf_project / "params.yaml")
    assert cfg.train.epochs == 4


def test_output_only_keys_change_no_digest_of_the_config(repo_root: Path) -> None:
    """train.verbose, train.progress_every and data.workers change what is printed or how fast,
    never a byte: the resume key, retrain's config digest, the prepared data's key and a study
    job's key stay; a key that changes the model (train.epochs) changes them all."""
    from dataclasses import asdict

    from gapline.data.prepare import data_key
    from gapline.experiments.study.plan import job_key
    from gapline.retrain.state import config_digest
    from gapline.stages.train import backup_key

    meta = make_meta(fingerprint="sha256:0", task="multiclass")

    def digests(overrides: list[str]) -> tuple[str, ...]:
        cfg = compose_config(overrides, root=repo_root)
        job = job_key(asdict(cfg))
        return backup_key(cfg, meta), config_digest(cfg), data_key(cfg), job

    base = digests([])
    assert digests(["train.verbose=quiet", "train.progress_every=0", "data.workers=3"]) == base
    changed = digests(["train.epochs=7", "data.val_fraction=0.2"])
    assert all(a != b for a, b in zip(changed, base)), (changed, base)
