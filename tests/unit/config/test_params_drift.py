"""params.yaml is stamped with conf/'s digest; any later edit under conf/ is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gapline.config.params import conf_digest, load_params, write_params
from gapline.core.errors import ConfigError


def _drift_error(params: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_params(params)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert "gapline params" in msg
    assert "conf_digest" in msg
    return msg


def test_write_params_stamps_conf_digest_and_loads(conf_project: Path) -> None:
    target = write_params([], root=conf_project)
    assert target == conf_project / "params.yaml"
    raw = yaml.safe_load(target.read_text(encoding="utf-8"))
    assert raw["meta"]["conf_digest"] == conf_digest(conf_project / "conf")
    cfg = load_params(target)
    assert cfg.meta.conf_digest == conf_digest(conf_project / "conf")
    assert cfg.train.epochs == 60


def test_write_params_does_not_need_the_cwd_in_the_project(
    conf_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    target = write_params([], root=conf_project)
    assert Path.cwd() == elsewhere  # compose restores the working directory
    assert not (elsewhere / "params.yaml").exists()
    assert load_params(target).meta.conf_digest == conf_digest(conf_project / "conf")


def test_every_edit_under_conf_is_detected(conf_project: Path) -> None:
    params = write_params([], root=conf_project)
    files = sorted(p for p in (conf_project / "conf").rglob("*.yaml"))
    assert len(files) > 20
    for path in files:
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        msg = _drift_error(params)
        assert "params.yaml" in msg
        path.write_bytes(original)
        load_params(params)  # restoring the file restores the match


def test_value_edit_in_used_group_file_is_refused_but_check_drift_false_loads(conf_project: Path) -> None:
    params = write_params([], root=conf_project)
    train_yaml = conf_project / "conf" / "train" / "default.yaml"
    train_yaml.write_text(train_yaml.read_text().replace("epochs: 60", "epochs: 61"))
    _drift_error(params)
    cfg = load_params(params, check_drift=False)
    assert cfg.train.epochs == 60  # params.yaml as it was composed


@pytest.mark.parametrize("change", ["add", "delete", "rename"])
def test_adding_deleting_or_renaming_a_conf_file_is_drift(conf_project: Path, change: str) -> None:
    params = write_params([], root=conf_project)
    group = conf_project / "conf" / "regularization"
    if change == "add":
        (group / "mine.yaml").write_text("defaults:\n  - none\n  - _self_\nl2: 0.01\n")
    elif change == "delete":
        (group / "l1.yaml").unlink()
    else:
        (group / "l1.yaml").rename(group / "lasso.yaml")
    _drift_error(params)


def test_overrides_are_reflected_in_params_yaml(conf_project: Path) -> None:
    params = write_params(
        ["regularization=l2", "model=cnn", "train.epochs=7", "data.train_fraction=0.5"],
        root=conf_project,
    )
    raw = yaml.safe_load(params.read_text(encoding="utf-8"))
    assert raw["train"]["epochs"] == 7
    assert raw["model"]["family"] == "cnn"
    assert raw["regularization"]["l2"] == pytest.approx(0.001)
    assert raw["regularization"]["dropout"] == 0.0
    assert raw["data"]["train_fraction"] == 0.5
    cfg = load_params(params)
    assert cfg.train.epochs == 7 and cfg.model.family == "cnn"
    assert cfg.regularization.l2 == pytest.approx(0.001)


def test_invalid_overrides_write_nothing(conf_project: Path) -> None:
    with pytest.raises(ConfigError, match=r"regularization\.dropout=1\.0"):
        write_params(["regularization.dropout=1.0"], root=conf_project)
    assert not (conf_project / "params.yaml").exists()


def test_rewriting_after_a_conf_edit_clears_the_drift(conf_project: Path) -> None:
    params = write_params([], root=conf_project)
    (conf_project / "conf" / "train" / "default.yaml").write_text(
        (conf_project / "conf" / "train" / "default.yaml").read_text().replace("epochs: 60", "epochs: 9")
    )
    _drift_error(params)
    write_params([], root=conf_project)
    assert load_params(params).train.epochs == 9


@pytest.mark.parametrize(
    ("section", "key", "value", "needle"),
    [
        ("train", "epochs", 0, "train.epochs=0"),
        ("regularization", "dropout", 1.5, "regularization.dropout=1.5"),
        ("data", "train_fraction", 0.0, "data.train_fraction=0.0"),
        ("train", "epochz", 3, "train.epochz"),
    ],
)
def test_hand_edited_params_with_bad_value_is_refused(
    conf_project: Path, section: str, key: str, value: object, needle: str
) -> None:
    params = write_params([], root=conf_project)
    raw = yaml.safe_load(params.read_text(encoding="utf-8"))
    raw[section][key] = value
    params.write_text(yaml.safe_dump(raw), encoding="utf-8")
    for check in (True, False):
        with pytest.raises(ConfigError) as info:
            load_params(params, check_drift=check)
        msg = str(info.value)
        assert "\n" not in msg and needle in msg, msg


def test_missing_params_yaml_points_to_gapline_params(conf_project: Path) -> None:
    with pytest.raises(ConfigError, match="gapline params"):
        load_params(conf_project / "params.yaml")


def test_conf_digest_sees_nested_group_files(tmp_path: Path, repo_root: Path) -> None:
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "conf", conf)
    before = conf_digest(conf)
    assert conf_digest(conf) == before  # stable
    assert before == conf_digest(repo_root / "conf")  # content-only: the location does not count
    nested = conf / "regularization" / "early_stopping.yaml"
    nested.write_text(nested.read_text().replace("patience: 10", "patience: 11"))
    after_value = conf_digest(conf)
    assert after_value != before
    deeper = conf / "regularization" / "presets" / "extra.yaml"
    deeper.parent.mkdir()
    deeper.write_text("l2: 0.5\n")
    assert conf_digest(conf) != after_value


def test_conf_digest_ignores_only_non_yaml_files_and_line_endings(tmp_path: Path, repo_root: Path) -> None:
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "conf", conf)
    before = conf_digest(conf)
    (conf / "README.md").write_text("notes\n")
    assert conf_digest(conf) == before
    f = conf / "train" / "default.yaml"
    f.write_bytes(f.read_bytes().replace(b"\n", b"\r\n"))
    assert conf_digest(conf) == before
    (conf / "train" / "extra.yml").write_text("epochs: 1\n")
    assert conf_digest(conf) != before


def test_cli_check_refuses_drift_with_one_line(
    conf_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gapline.cli import main

    monkeypatch.chdir(conf_project)
    assert main(["params"]) == 0
    assert main(["check"]) == 0
    capsys.readouterr()
    (conf_project / "conf" / "model" / "mlp.yaml").write_text("family: mlp\nhidden_units: [64]\nactivation: relu\n")
    assert main(["check"]) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "gapline params" in err[0]


def test_write_params_never_writes_a_file_load_params_refuses(conf_project: Path) -> None:
    try:
        params = write_params(["+train.epochz=3"], root=conf_project)
    except ConfigError:
        assert not (conf_project / "params.yaml").exists()
        return
    load_params(params)


def test_a_failed_dvc_experiment_puts_params_yaml_back_and_names_the_cause(
    conf_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`dvc exp run -S` composes params.yaml from conf/ anew (the choices of an earlier
    `gapline params` lost); when that fails the config check, the workspace gets back the
    params.yaml it had and the error says why (#27 trap 2). Outside an experiment: untouched."""
    from gapline import cli

    monkeypatch.chdir(conf_project)
    assert cli.main(["params", "train.epochs=3"]) == 0
    composed = (conf_project / "params.yaml").read_text()
    assert cli.main(["check"]) == 0  # a checked params.yaml is remembered too
    data = yaml.safe_load(composed)
    data["model"]["kwargs"] = {"depth": 1}  # what DVC composes from conf/ + -S ++model.kwargs.depth=1
    data["train"]["epochs"] = 60
    bad = yaml.safe_dump(data, sort_keys=False)

    (conf_project / "params.yaml").write_text(bad)
    capsys.readouterr()
    assert cli.main(["check"]) == 2  # by hand, not in an experiment: left as it is
    assert (conf_project / "params.yaml").read_text() == bad
    assert "dvc exp run" not in capsys.readouterr().err

    monkeypatch.setenv("DVC_EXP_NAME", "silly-hood")
    assert cli.main(["check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.kwargs={'depth': 1}" in err[0], err
    assert "without the choices of an earlier `gapline params`" in err[0] and "back as it was" in err[0]
    assert (conf_project / "params.yaml").read_text() == composed
