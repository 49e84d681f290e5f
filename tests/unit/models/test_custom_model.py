"""``model=custom``: a user's builder, written here as a real module in a temp project, gets the
toolkit through the kit, gets the architecture-free techniques without it, and a switch it
gives nothing to act on is one error line before any run opens."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gapline.core.errors import ConfigError
from helpers.prepared_meta import make_meta

BUILDERS = '''
import keras
from keras import layers


@keras.saving.register_keras_serializable(package="usernets")
class Residual(layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = layers.Dense(units, activation="relu")
        self.outer = layers.Dense(units)

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer.build((*input_shape[:-1], self.units))

    def call(self, x):
        return x + self.outer(self.inner(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Unregistered(layers.Layer):
    def call(self, x):
        return x * 2.0


def plain(kit, width=8, depth=1):
    inputs = keras.Input(kit.input_shape)
    x = layers.Flatten()(inputs)
    x = layers.Dense(width, activation="relu")(x)
    for _ in range(depth):
        x = Residual(width)(x)
    return keras.Model(inputs, layers.Dense(kit.num_outputs, activation="softmax")(x))


def own_penalty(kit):
    inputs = keras.Input(kit.input_shape)
    x = layers.Flatten()(inputs)
    x = layers.Dense(4, kernel_regularizer=keras.regularizers.L1(0.5), name="mine")(x)
    return keras.Model(inputs, layers.Dense(kit.num_outputs, activation="softmax")(x))


def with_kit(kit, width=8, depth=2):
    inputs, x = kit.inputs()
    x = layers.Flatten()(x)
    x = kit.tail(kit.dense(width)(x))
    for _ in range(depth):
        x = kit.tail(kit.tied_dense(width)(x))
    return keras.Model(inputs, kit.head(x))


def tied_once(kit):
    inputs, x = kit.inputs()
    x = layers.Flatten()(x)
    x = kit.tail(kit.tied_dense(4)(x))
    return keras.Model(inputs, kit.head(x))


def logits(kit):
    inputs = keras.Input(kit.input_shape)
    return keras.Model(inputs, layers.Dense(kit.num_outputs)(layers.Flatten()(inputs)))


def wrong_width(kit):
    inputs = keras.Input(kit.input_shape)
    return keras.Model(inputs, layers.Dense(kit.num_outputs + 1, activation="softmax")(layers.Flatten()(inputs)))


def two_outputs(kit):
    inputs = keras.Input(kit.input_shape)
    x = layers.Flatten()(inputs)
    head = layers.Dense(kit.num_outputs, activation="softmax")
    return keras.Model(inputs, [head(x), layers.Dense(kit.num_outputs, activation="softmax")(x)])


def not_a_model(kit):
    return "model"


def crashes(kit):
    raise RuntimeError("my builder broke")


def unregistered(kit):
    inputs = keras.Input(kit.input_shape)
    x = Unregistered()(layers.Flatten()(inputs))
    return keras.Model(inputs, layers.Dense(kit.num_outputs, activation="softmax")(x))
'''


@pytest.fixture()
def usernets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user's package ``usernets`` in a project folder that is the working directory."""
    pkg = tmp_path / "usernets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent(BUILDERS))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in [m for m in sys.modules if m == "usernets" or m.startswith("usernets.")]:
        del sys.modules[name]
    while str(tmp_path.resolve()) in sys.path:
        sys.path.remove(str(tmp_path.resolve()))


def _build(make_tiny_config, builder: str, reg: dict[str, Any] | None = None, **extra: Any) -> Any:
    from gapline.models.build import build_model

    cfg = make_tiny_config(
        {"model": {"family": "custom", "builder": f"usernets.nets:{builder}", **extra}, "regularization": reg or {}}
    )
    return build_model((4, 4, 1), 3, cfg.model, cfg.regularization, cfg.augment.online, cfg.train.seed)


def _kernels(model: Any) -> dict[str, Any]:
    return {
        layer.name: layer.kernel
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if getattr(layer, "kernel", None) is not None
    }


def test_without_the_kit_gapline_penalises_and_caps_every_kernel_nested_ones_too(usernets, make_tiny_config) -> None:
    model = _build(make_tiny_config, "plain", {"l2": 0.01, "max_norm": 2.0}, kwargs={"depth": 2})
    kernels = _kernels(model)
    assert len(kernels) == 2 + 2 * 2  # first dense, head, and two Dense inside each Residual
    for name, kernel in kernels.items():
        assert type(kernel.regularizer).__name__ == "L2" and kernel.regularizer.l2 == pytest.approx(0.01), name
        assert type(kernel.constraint).__name__ == "MaxNorm", name
    # the penalty is in the loss: one term per kernel
    model(np.zeros((1, 4, 4, 1), "float32"))
    assert len(model.losses) == len(kernels)


def test_the_penalties_gapline_adds_survive_a_save_and_a_reload(usernets, make_tiny_config, tmp_path) -> None:
    """The penalty is set on the layer too (what its config saves), not only on the variable
    (what this process trains with): the saved model (what evaluate scores, with its penalty
    in the loss) still penalises and caps the kernels of its graph's layers. The Dense layers
    that the user's ``Residual`` makes in its own ``__init__`` are rebuilt from its config,
    which does not carry them: those lose the penalty on reload (the README says so)."""
    from gapline.models.saving import load_model, save_model

    model = _build(make_tiny_config, "plain", {"l2": 0.01, "max_norm": 2.0}, kwargs={"depth": 2})
    loaded = load_model(save_model(model, tmp_path / "m.keras"))
    graph = {layer.name: layer.kernel for layer in loaded.layers if getattr(layer, "kernel", None) is not None}
    assert len(graph) == 2  # the first dense and the head
    for name, kernel in graph.items():
        assert type(kernel.regularizer).__name__ == "L2" and kernel.regularizer.l2 == pytest.approx(0.01), name
        assert type(kernel.constraint).__name__ == "MaxNorm", name
    loaded(np.zeros((1, 4, 4, 1), "float32"))
    assert len(loaded.losses) == len(graph)


def test_a_builders_own_regularizer_is_kept(usernets, make_tiny_config) -> None:
    kernels = _kernels(_build(make_tiny_config, "own_penalty", {"l2": 0.01}))
    assert type(kernels["mine"].regularizer).__name__ == "L1"
    assert sum(type(k.regularizer).__name__ == "L2" for k in kernels.values()) == 1  # the head


def test_without_the_kit_input_noise_and_online_augmentation_go_in_front(usernets, make_tiny_config) -> None:
    from gapline.models.build import build_model

    cfg = make_tiny_config(
        {
            "model": {"family": "custom", "builder": "usernets.nets:plain"},
            "regularization": {"input_noise": 0.3},
            "augment": {"online": {"enabled": True, "shift": 0.1}},
        }
    )
    model = build_model((4, 4, 1), 3, cfg.model, cfg.regularization, cfg.augment.online, cfg.train.seed)
    names = [layer.name for layer in model.layers]
    assert names[1:3] == ["aug_shift", "input_noise"], names
    x = np.ones((2, 4, 4, 1), "float32")
    assert not np.allclose(model(x, training=True), model(x, training=True))
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))


def test_the_kit_applies_block_switches_and_tying(usernets, make_tiny_config) -> None:
    from gapline.models.build import effective_params, shares_weights

    reg = {"dropout_rates": [0.1, 0.2, 0.3], "batch_norm": True, "tie_weights": True, "weight_noise": 0.01, "l2": 0.001}
    model = _build(make_tiny_config, "with_kit", reg)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 3 and kinds.count("NoisyDense") == 3  # first, the tied one, the head
    rates = [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"]
    assert rates == [0.1, 0.2, 0.3]
    counts = effective_params(model)
    assert counts["params_untied"] > counts["params"]  # the tied layer is stored once, used twice
    assert shares_weights(model)


@pytest.mark.parametrize(
    "builder, reg, key",
    [
        ("plain", {"dropout": 0.2}, "regularization.dropout=0.2"),
        ("plain", {"dropout_rates": [0.1]}, "regularization.dropout_rates=[0.1]"),
        ("plain", {"batch_norm": True}, "regularization.batch_norm=True"),
        ("plain", {"hidden_noise": 0.1}, "regularization.hidden_noise=0.1"),
        ("plain", {"activity_l2": 0.1}, "regularization.activity_l2=0.1"),
        ("plain", {"weight_noise": 0.1}, "regularization.weight_noise=0.1"),
        ("plain", {"tie_weights": True}, "regularization.tie_weights=True"),
        ("tied_once", {"tie_weights": True}, "applies each kit.tied_* layer only once"),
        ("with_kit", {"dropout_rates": [0.1, 0.2]}, "regularization.dropout_rates=[0.1, 0.2]"),
        ("with_kit", {"layer_strength": [1.0, 2.0, 3.0, 4.0]}, "regularization.layer_strength"),
    ],
)
def test_a_switch_the_builder_gives_nothing_to_act_on_is_one_line(usernets, make_tiny_config, builder, reg, key) -> None:
    with pytest.raises(ConfigError) as err:
        _build(make_tiny_config, builder, reg)
    assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "builder, extra, mentions",
    [
        ("missing_function", {}, ["model.builder", "missing_function"]),
        ("plain", {"kwargs": {"colour": 1}}, ["model.kwargs", "colour"]),
        ("logits", {}, ["model.builder", "class probabilities"]),
        ("wrong_width", {}, ["model.builder", "[None, 3]", "[None, 4]"]),
        ("not_a_model", {}, ["model.builder", "keras.Model", "str"]),
        ("two_outputs", {}, ["model.builder", "one output, not 2"]),
        ("crashes", {}, ["model.builder", "my builder broke", "nets.py:"]),
        ("unregistered", {}, ["model.builder", "safe_mode=True", "register_keras_serializable"]),
    ],
)
def test_a_broken_builder_is_one_line(usernets, make_tiny_config, builder, extra, mentions) -> None:
    with pytest.raises(ConfigError) as err:
        _build(make_tiny_config, builder, **extra)
    message = str(err.value)
    assert "\n" not in message
    for needle in mentions:
        assert needle in message, message


def test_a_module_that_does_not_exist_is_refused_when_composing(conf_project: Path, monkeypatch, capsys) -> None:
    from gapline import cli

    monkeypatch.chdir(conf_project)
    assert cli.main(["params", "model=custom", "model.builder=nowhere.nets:build"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.builder='nowhere.nets:build'" in err[0] and "importable" in err[0], err
    assert not (conf_project / "params.yaml").exists()


@pytest.mark.parametrize(
    ("builder", "mentions"),
    [("usernets.nets:plian", ["no 'plian'", "plain", "own_penalty"]), ("usernets.netz:plain", ["'usernets.netz' is not in"])],
)
def test_a_typo_in_the_builders_module_or_function_is_refused_when_composing(
    usernets: Path, repo_root: Path, capsys, builder: str, mentions: list[str]
) -> None:
    """Found by reading the module's source, before any of its code runs (#27 trap 7)."""
    import shutil

    from gapline import cli

    shutil.copytree(repo_root / "conf", usernets / "conf")
    assert cli.main(["params", "model=custom", f"model.builder={builder}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: model.builder='{builder}' is not allowed"), err
    assert all(m in err[0] for m in mentions), err
    assert not (usernets / "params.yaml").exists()


def test_params_resolve_the_builder_package_as_a_train_dependency(usernets: Path, repo_root: Path) -> None:
    import shutil

    import yaml

    from gapline import cli

    shutil.copytree(repo_root / "conf", usernets / "conf")
    assert cli.main(["params", "model=custom", "model.builder=usernets.nets:plain", "model.kwargs.depth=3"]) == 0
    model = yaml.safe_load((usernets / "params.yaml").read_text())["model"]
    assert model["kwargs"] == {"depth": 3}
    assert model["deps"] == {"builder": "usernets", "weights": "src/gapline/models/saving.py", "init_from": "src/gapline/models/saving.py"}


def test_a_saved_custom_model_reloads_in_safe_mode_with_its_module_imported(usernets, make_tiny_config, tmp_path) -> None:
    import subprocess

    from gapline.models.saving import archive_modules, save_model

    model = _build(make_tiny_config, "plain")
    path = save_model(model, tmp_path / "m.keras")
    assert archive_modules(path) == ["usernets.nets"]
    x = np.random.default_rng(0).random((2, 4, 4, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(model(x)))
    # a fresh process, started in the project: load_model imports usernets.nets by itself
    code = (
        "import numpy as np; from gapline.models.saving import load_model; "
        "m = load_model('m.keras'); print(np.abs(np.asarray(m(np.load('x.npy'))) - np.load('y.npy')).max())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-6


def test_a_saved_training_state_is_not_resumed_after_the_builder_changed(usernets: Path, make_tiny_config) -> None:
    """DVC reruns train after a builder edit; the backup of a killed run must not be restored
    over the new model (its key covers the builder's package, like the study's cache key)."""
    from gapline.stages.train import backup_key

    cfg = make_tiny_config(
        {"model": {"family": "custom", "builder": "usernets.nets:plain", "deps": {"builder": "usernets"}}}
    )
    meta = make_meta(fingerprint="f")
    before = backup_key(cfg, meta)
    assert backup_key(cfg, meta) == before
    nets = usernets / "usernets" / "nets.py"
    nets.write_text(nets.read_text() + "\n# edited\n")
    assert backup_key(cfg, meta) != before


@pytest.mark.parametrize("builder", ["with_kit", "plain"])
def test_a_builder_on_a_table_sees_the_encoded_features(usernets, make_tiny_config, builder: str) -> None:
    """A table's cells reach a builder's layers encoded: through kit.inputs(), or, for a
    builder that starts from keras.Input(kit.input_shape), by the stem gapline puts in front;
    kit.input_shape is then the encoding's width, and the whole model takes the raw cells."""
    from gapline.config.tasks import TaskSpec
    from gapline.models.build import build_model

    income = {"name": "income", "kind": "numeric", "median": 1.0, "mean": 1.0, "std": 2.0, "indicator": True}
    city = {"name": "city", "kind": "categorical", "values": ["a", "b", "c"], "vocabulary": ["a", "b"], "encoding": "one_hot"}
    task = TaskSpec(name="multiclass", labels=("x", "y", "z"), table=(income, city))
    cfg = make_tiny_config({"model": {"family": "custom", "builder": f"usernets.nets:{builder}"}})
    model = build_model((2,), task, cfg.model, cfg.regularization, cfg.augment.online, cfg.train.seed)
    assert model.input_shape == (None, 2) and "table_encoding" in [layer.name for layer in model.layers]
    probabilities = np.asarray(model.predict(np.array([[np.nan, 2.0], [3.0, np.nan]], dtype="float32"), verbose=0))
    assert probabilities.shape == (2, 3) and np.all(np.isfinite(probabilities))
    from gapline.models.kit import ModelKit
    from gapline.models.stem import ModelSpec

    kit = ModelKit(ModelSpec((2,), task, cfg.model, cfg.regularization, cfg.augment.online, 0))
    assert kit.input_shape == (2 + 4,)  # the number and its indicator, then a, b, missing, out of vocabulary
