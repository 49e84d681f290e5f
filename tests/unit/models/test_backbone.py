"""model.family=backbone: a keras.applications network under a gapline head, built from
config, saved and reloaded in safe mode, weights from a local file, and the two-phase fit
(frozen backbone, then fine-tuning with batch norm kept frozen) with resume across phases.

MobileNetV3Small at 32x32 on 8x8 grayscale images throughout: the smallest backbone, and
its first training step still takes ~15 s of tracing on a CPU, so the fits are few."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from conftest import TINY_CONFIG, _deep_merge, tiny_images
from gapline.config.checks import from_container
from gapline.core.errors import ConfigError

LR = 0.01
SCALE = 0.5


def _cfg(**model: Any) -> Any:
    extra = {"model": {"family": "backbone", "hidden_units": [8], **model}}
    return from_container(_deep_merge(TINY_CONFIG, extra))


def _build(cfg: Any, channels: int = 1, seed: int = 0) -> Any:
    from gapline.models.build import build_model

    keras.utils.set_random_seed(seed)
    return build_model((8, 8, channels), 3, cfg.model, cfg.regularization, cfg.augment.online, seed)


def _layers(model: Any) -> tuple[Any, list[Any], list[Any]]:
    """The backbone, its batch-norm layers and its other layers with weights."""
    backbone = model.get_layer("MobileNetV3Small")
    bn = [lyr for lyr in backbone.layers if isinstance(lyr, keras.layers.BatchNormalization)]
    other = [lyr for lyr in backbone.layers if lyr.weights and not isinstance(lyr, keras.layers.BatchNormalization)]
    return backbone, bn, other


def _values(layers: list[Any]) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(w)) for layer in layers for w in layer.weights]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("channels", [1, 3])
def test_builds_on_8x8_images_and_reloads_in_safe_mode(tmp_path: Path, channels: int) -> None:
    from gapline.models.saving import load_model, save_model

    model = _build(_cfg(), channels)
    names = [layer.name for layer in model.layers]
    assert names[:2] == ["inputs", "resize"] and "preprocess" in names and names[-1] == "classifier"
    assert ("to_rgb" in names) == (channels == 1)
    backbone, bn, _ = _layers(model)
    assert backbone.input_shape == (None, 32, 32, 3)
    assert not backbone.trainable and not backbone.trainable_weights  # freeze=all
    assert [w.name for w in model.trainable_weights] == ["kernel", "bias", "kernel", "bias"]  # the head
    x = np.random.default_rng(0).random((4, 8, 8, channels), dtype=np.float32)
    path = save_model(model, tmp_path / "model.keras")
    loaded = load_model(path)  # safe_mode=True: no Lambda anywhere
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_same_build_saves_the_same_bytes_in_one_process(tmp_path: Path) -> None:
    """Keras numbers automatic layer names per process (re_lu, then re_lu_14 ...); the
    backbone's are renamed canonically, so a second build is the same file."""
    from gapline.models.saving import save_model

    keras.backend.clear_session()
    first = save_model(_build(_cfg(), seed=3), tmp_path / "a.keras").read_bytes()
    keras.layers.ReLU()  # move the process-wide name counters on
    second = save_model(_build(_cfg(), seed=3), tmp_path / "b.keras").read_bytes()
    assert first == second


BUILD_AND_SAVE = """
import sys
from gapline.models import runtime
from gapline.config.checks import from_container
from gapline.models.saving import save_model
from gapline.models.build import build_model
cfg = from_container({"model": {"family": "backbone", "hidden_units": [8]}, "train": {"accelerator": "cpu"}})
runtime.configure(5, True, "cpu", "float32")
save_model(build_model((8, 8, 1), 3, cfg.model, cfg.regularization, None, 5), sys.argv[1])
"""


@pytest.mark.slow
def test_same_build_saves_the_same_bytes_in_a_fresh_process_and_in_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh process, and this one after whatever it built before: the same file."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    fresh, here = tmp_path / "fresh.keras", tmp_path / "here.keras"
    proc = subprocess.Popen([sys.executable, "-c", BUILD_AND_SAVE, str(fresh)], env=env)
    keras.layers.ReLU()  # move this process's name counters on
    monkeypatch.setattr(sys, "argv", ["-c", str(here)])
    exec(BUILD_AND_SAVE, {"__name__": "__main__"})
    assert proc.wait(timeout=300) == 0
    assert fresh.read_bytes() == here.read_bytes()


def test_weights_come_from_a_local_file(tmp_path: Path) -> None:
    source = _build(_cfg(), seed=1)
    path = tmp_path / "notop.weights.h5"
    source.get_layer("MobileNetV3Small").save_weights(path)
    target = _build(_cfg(weights=str(path)), seed=2)  # another random init, then the file
    src, tgt = source.get_layer("MobileNetV3Small"), target.get_layer("MobileNetV3Small")
    assert _same(_values([src]), _values([tgt]))
    assert not _same(_values([source.get_layer("classifier")]), _values([target.get_layer("classifier")]))


def _one_line_error(cfg: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _build(cfg)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    return message


def test_a_missing_or_incompatible_weights_file_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.weights.h5")
    message = _one_line_error(_cfg(weights=missing))
    assert message.startswith(f"model.weights={missing!r} is not allowed") and "no such file" in message
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "other.weights.h5")
    message = _one_line_error(_cfg(weights=str(tmp_path / "other.weights.h5")))
    assert "MobileNetV3Small without its top" in message and "loading failed" in message
    assert "match none of MobileNetV3Small, MobileNetV3Large" in message
    (tmp_path / "garbage.h5").write_text("not hdf5")
    assert "loading failed" in _one_line_error(_cfg(weights=str(tmp_path / "garbage.h5")))


def test_weights_of_another_backbone_are_refused_when_composing_naming_it(tmp_path: Path, conf_project: Path, capsys, monkeypatch) -> None:
    """Told from the file's weight shapes (no network built), before any stage runs; the
    whole line names the network the file fits (#27 trap 7)."""
    from gapline import cli

    v2 = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    v2.save_weights(tmp_path / "v2.weights.h5")
    monkeypatch.chdir(conf_project)
    assert cli.main(["params", "model=backbone", f"model.weights={tmp_path / 'v2.weights.h5'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model.weights="), err
    assert err[0].endswith("this file holds a MobileNetV2's weights (set model.backbone=MobileNetV2)"), err
    assert not (conf_project / "params.yaml").exists()
    assert cli.main(["params", "model=backbone", "model.backbone=MobileNetV2", f"model.weights={tmp_path / 'v2.weights.h5'}"]) == 0
    # the signatures on record are the networks' own
    from gapline.config.backbone_weights import file_signature, known

    assert file_signature(tmp_path / "v2.weights.h5") == known()["MobileNetV2"]


def test_freeze_by_name_or_index_freezes_up_to_that_layer() -> None:
    by_index = _layers(_build(_cfg(freeze="5")))[0]
    assert [lyr.trainable for lyr in by_index.layers] == [False] * 6 + [True] * (len(by_index.layers) - 6)
    name = by_index.layers[5].name
    by_name = _layers(_build(_cfg(freeze=name)))[0]
    assert [lyr.trainable for lyr in by_name.layers] == [lyr.trainable for lyr in by_index.layers]
    assert all(lyr.trainable for lyr in _layers(_build(_cfg(freeze="none")))[0].layers)


@pytest.mark.parametrize(
    "model, key, allowed",
    [
        ({"freeze": "no_such_layer"}, "model.freeze", "a layer name of MobileNetV3Small (e.g. conv, conv_bn"),
        ({"freeze": "157"}, "model.freeze", "an index in 0..156"),
        ({"fine_tune": {"epochs": 1, "unfreeze": "158"}}, "model.fine_tune.unfreeze", "in 1..157"),
    ],
)
def test_a_bad_freeze_is_one_line(model: dict[str, Any], key: str, allowed: str) -> None:
    message = _one_line_error(_cfg(**model))
    assert message.startswith(f"{key}=") and allowed in message


class _Snapshots(keras.callbacks.Callback):
    """The backbone's weights (batch norm apart) and batch-norm weights and statistics at the
    start and after every epoch, and the head's."""

    def __init__(self) -> None:
        super().__init__()
        self.convs: list[list[np.ndarray]] = []
        self.bns: list[list[np.ndarray]] = []
        self.heads: list[list[np.ndarray]] = []

    def _take(self) -> None:
        _, bn, other = _layers(self.model)
        self.convs.append(_values(other))
        self.bns.append(_values(bn))
        self.heads.append(_values([self.model.get_layer("dense_0"), self.model.get_layer("classifier")]))

    def on_train_begin(self, logs: Any = None) -> None:
        if not self.convs:  # the first fit only: phase 2's starts where phase 1 ended
            self._take()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._take()


def _two_phase_cfg(**extra: Any) -> Any:
    base = {
        "model": {"family": "backbone", "hidden_units": [8], "fine_tune": {"epochs": 2, "learning_rate_scale": SCALE}},
        "train": {"epochs": 2, "learning_rate": LR},
    }
    return from_container(_deep_merge(_deep_merge(TINY_CONFIG, base), extra))


def _fit(cfg: Any, callbacks: tuple = (), backup: Any = None) -> Any:
    from gapline.models import runtime
    from gapline.train.fit import train_model

    keras.backend.clear_session()
    runtime.configure(cfg.train.seed, True, "cpu", "float32")
    x, y = tiny_images(48, size=8, seed=0)
    xv, yv = tiny_images(15, size=8, seed=1)
    return train_model(cfg, x, y, xv, yv, 3, callbacks=callbacks, backup=backup)


# Phase 1 stops early (patience 1, an improvement of 10 never comes): after 2 of its 3
# epochs; phase 2 runs its 2 on from there.
EARLY_STOPPING = {
    "train": {"epochs": 3},
    "regularization": {"dropout": 0.3, "early_stopping": {"enabled": True, "patience": 1, "min_delta": 10.0}},
}


@pytest.fixture(scope="module")
def two_phases() -> tuple[Any, _Snapshots]:
    """One uninterrupted two-phase fit, watched epoch by epoch: the slow tests below read it,
    and the resume test compares its interrupted runs with it (each fit of this network costs
    ~10 s of tracing, so there is only one uninterrupted one)."""
    snaps = _Snapshots()
    return _fit(_two_phase_cfg(**EARLY_STOPPING), (snaps,)), snaps


@pytest.mark.slow
def test_two_phases_continue_one_history(two_phases: tuple[Any, _Snapshots]) -> None:
    result, _ = two_phases
    h = result.history
    assert result.epochs_run == 4 and all(len(v) == 4 for v in h.values())
    assert h["phase"] == [1, 1, 2, 2]
    assert {"gap_loss", "gap_accuracy", "val_loss", "learning_rate"} <= set(h)
    np.testing.assert_allclose(h["learning_rate"], [LR, LR, LR * SCALE, LR * SCALE], rtol=1e-6)


@pytest.mark.slow
def test_phase_one_trains_the_head_only_and_phase_two_keeps_batch_norm_frozen(
    two_phases: tuple[Any, _Snapshots], tmp_path: Path
) -> None:
    result, snaps = two_phases
    convs, bns, heads = snaps.convs, snaps.bns, snaps.heads  # [start, epoch 1 .. epoch 4]
    assert len(convs) == 5
    assert _same(convs[0], convs[1]) and _same(convs[1], convs[2])  # phase 1: backbone frozen
    assert not _same(heads[0], heads[2])  # ... the head trains
    assert not _same(convs[2], convs[3]) and not _same(convs[3], convs[4])  # phase 2: fine-tuned
    for later in bns[1:]:  # gamma, beta and the moving statistics: never updated
        assert _same(bns[0], later)
    backbone, bn, _ = _layers(result.model)
    assert backbone.trainable and not any(lyr.trainable for lyr in bn)

    from gapline.models.saving import load_model, save_model

    x = tiny_images(6, size=8, seed=3)[0]
    loaded = load_model(save_model(result.model, tmp_path / "model.keras"))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6)


def test_phase_two_unfreezes_and_recompiles_at_the_scaled_learning_rate() -> None:
    """The schedule itself, without training: each phase's fit sees its learning rate, the
    backbone's trainable state and the compiled optimizer's rate (the slow tests train it)."""
    from gapline.config.tasks import multiclass
    from gapline.train.fit import PhaseFit, compile_model
    from gapline.train.phases import two_phase_fit

    cfg = _two_phase_cfg(model={"fine_tune": {"unfreeze": "10"}})
    model = _build(cfg)
    compile_model(model, cfg, 3, multiclass(3))
    seen: list[tuple[int, float, float, bool, bool]] = []

    class Recorded(PhaseFit):
        def run(self, cfg: Any, first: int, end: int, phase: int = 0, history: Any = None, restore: bool = True) -> Any:
            backbone = _layers(self.model)[0]
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            seen.append((phase, cfg.train.learning_rate, rate, backbone.layers[-1].trainable, backbone.layers[0].trainable))
            return {"loss": [1.0] * (end - first), "phase": [phase] * (end - first)}

    history, first = two_phase_fit(Recorded(model, None, None, [], [], None, 0, multiclass(3)), cfg, 3)
    assert first == 0 and [s[0] for s in seen] == [1, 2] and history["phase"] == [2, 2]
    assert seen[0] == (1, LR, pytest.approx(LR), False, False)  # phase 1: the backbone frozen
    # phase 2: the top 10 layers trainable, the rest not; recompiled at LR x SCALE
    assert seen[1] == (2, pytest.approx(LR * SCALE), pytest.approx(LR * SCALE), True, False)


def test_fine_tune_unfreezes_the_top_layers_only() -> None:
    from gapline.models.backbone import set_fine_tune

    backbone = _layers(_build(_cfg()))[0]
    set_fine_tune(backbone, "10")
    top = backbone.layers[-10:]
    assert not any(lyr.trainable for lyr in backbone.layers[:-10])
    assert all(lyr.trainable != isinstance(lyr, keras.layers.BatchNormalization) for lyr in top)
    assert backbone.trainable_weights and all(
        w.name in ("kernel", "bias", "depthwise_kernel") for w in backbone.trainable_weights
    )


@pytest.mark.slow
def test_early_stopping_ends_phase_one_not_the_fine_tuning_and_resume_crosses_phases(
    two_phases: tuple[Any, _Snapshots], tmp_path: Path
) -> None:
    """Phase 1 stops early (its own EarlyStopping); phase 2 runs on from there. A run killed
    at the phase boundary or inside phase 2 resumes to exactly the uninterrupted result."""
    from gapline.train.resume import Backup

    cfg = _two_phase_cfg(**EARLY_STOPPING)
    straight, _ = two_phases  # the uninterrupted run (its callback only reads the weights)
    assert straight.history["phase"] == [1, 1, 2, 2]  # phase 1 stopped after 2 of 3 epochs

    class Interrupt(keras.callbacks.Callback):
        def __init__(self, at: int) -> None:
            super().__init__()
            self.at = at
            self.epochs: list[int] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epochs.append(epoch)
            if epoch == self.at:
                raise KeyboardInterrupt

    # One run killed twice: after phase 1's last epoch (2), then, resumed from there, inside
    # phase 2 (3); a wrong restore at either point would show in the final model.
    backup = Backup(tmp_path / "b", "key")
    for at, first in ((2, 0), (3, 2)):
        interrupt = Interrupt(at)
        with pytest.raises(KeyboardInterrupt):
            _fit(cfg, (interrupt,), backup)
        assert interrupt.epochs[0] == first  # the second run started where the first stopped
        assert backup.state()["epoch"] == at
    resumed = _fit(cfg, backup=backup)
    assert resumed.resumed_from == 3
    assert resumed.history == straight.history
    assert _same(resumed.model.get_weights(), straight.model.get_weights())


@pytest.mark.parametrize(
    "name, reference",
    [
        ("ResNet50", keras.applications.resnet50.preprocess_input),  # BGR minus the mean
        ("DenseNet121", keras.applications.densenet.preprocess_input),  # standardized
        ("MobileNetV2", keras.applications.mobilenet_v2.preprocess_input),  # [-1, 1]
    ],
)
def test_preprocessing_is_the_backbones_own_from_plain_layers(name: str, reference: Any) -> None:
    from gapline.models.backbone import preprocessing

    x = np.random.default_rng(0).random((2, 4, 4, 3), dtype=np.float32)  # gapline's [0, 1]
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, preprocessing(name, inputs, rgb=True))
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference(x * 255.0), atol=1e-5)
