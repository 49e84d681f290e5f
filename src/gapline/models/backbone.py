"""A keras.applications network (a *backbone*) under a gapline head: transfer learning.

The model is::

    inputs → [online augmentation, input noise] → resize to input_size → 3 channels
           → the backbone's own preprocessing → backbone (no top, global average pool)
           → hidden_units dense blocks → classifier

Images reach gapline as float32 in [0, 1]; each backbone expects its own pixel range, so
its ``preprocess_input`` is rebuilt from plain layers with fixed constants (``Rescaling``,
per channel where needed, and a channel flip for the BGR-trained ResNet50) — never a
``Lambda`` layer, which ``safe_mode`` loading refuses. Grayscale images are repeated into 3
channels with ``Concatenate``.

Every regularization switch acts on the head (penalties, max-norm, weight noise, batch
norm, hidden noise, dropout, tying) and on the input side (online augmentation, input
noise); the backbone's own layers are keras.applications' as they are.

Pretrained weights are never downloaded at run time: ``model.weights`` is ``none`` (random
initialisation) or a local file, loaded with ``backbone.load_weights``. Fetch the official
ImageNet weights without the classifier ("no top") once, on a machine with internet access,
and point ``model.weights`` at the file (and keep it under DVC or beside the project)::

    mkdir -p weights && python -c "import keras; keras.applications.MobileNetV3Small(include_top=False, \\
        weights='imagenet', include_preprocessing=False, input_shape=(224, 224, 3)) \\
        .save_weights('weights/mobilenet_v3_small_notop.weights.h5')"

(the same for MobileNetV3Large; the other backbones have no ``include_preprocessing``).
The legacy ``..._no_top.h5`` files that Keras caches under ``~/.keras/models`` load too.
Convolution weights do not depend on the input size, so a file saved at 224x224 loads into a
backbone built at any ``input_size``. One caveat, Keras' own: EfficientNetB0 gets an extra
per-channel rescale after its input normalization only when Keras downloads the ImageNet
weights itself; built without weights and loaded from a file (here, and in
``EfficientNetB0(weights=path)`` alike) it lacks it, so its inputs are about twice the scale
ImageNet training saw. Fine-tuning adapts; for frozen features prefer another backbone.

``model.freeze`` chooses which backbone layers train in phase 1 (``all``, ``none``, or a
layer name or index: that layer and every one before it are frozen, indices counting
``backbone.layers`` from 0, its input layer). Phase 2 (``model.fine_tune``, run by
:func:`gapline.train.fit.train_model`) unfreezes all or the top N layers and keeps every
BatchNormalization layer of the backbone frozen, i.e. in inference mode.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from gapline.config import backbone_weights
from gapline.config.schema import ModelConfig
from gapline.core.errors import ConfigError, bad_value, flat_message
from gapline.models.stem import ModelSpec, dense_blocks, input_stem, output_head

# ImageNet statistics (RGB) that keras.applications' preprocess_input uses.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

# What each backbone's preprocess_input expects (keras.applications.imagenet_utils modes):
#   tf: pixels in [-1, 1]; pixels: [0, 255] (the network rescales them itself);
#   caffe: BGR, [0, 255] minus the ImageNet mean; torch: [0, 1] standardized per channel.
PREPROCESSING = {
    "MobileNetV3Small": "tf",  # built with include_preprocessing=False
    "MobileNetV3Large": "tf",
    "MobileNetV2": "tf",
    "EfficientNetB0": "pixels",
    "ResNet50": "caffe",
    "DenseNet121": "torch",
}


def build_backbone(spec: ModelSpec) -> Any:
    """The whole model (uncompiled), the backbone frozen as ``model.freeze`` says."""
    import keras

    model = spec.model
    height, width, channels = spec.input_shape
    if channels not in (1, 3):
        raise ConfigError(
            bad_value(
                "model.family",
                model.family,
                f"mlp, cnn or custom for images with {channels} channels (a backbone takes 1 or 3)",
            )
        )
    inputs, x = input_stem(spec)
    size = model.input_size
    if (height, width) != (size, size):
        x = keras.layers.Resizing(size, size, name="resize")(x)
    if channels == 1:
        x = keras.layers.Concatenate(axis=-1, name="to_rgb")([x, x, x])
    x = preprocessing(model.backbone, x, rgb=channels == 3)
    backbone = make_backbone(model)
    x = backbone(x)
    x = dense_blocks(x, spec)
    outputs = output_head(x, spec)
    out = keras.Model(inputs, outputs, name="backbone")
    for op in out.operations:  # the one unnamed operation: ResNet50's channel flip
        if type(op).__name__ == "Flip":
            op.name = "to_bgr"
    return out


def preprocessing(name: str, x: Any, *, rgb: bool) -> Any:
    """``x`` (3 channels in [0, 1]) as the backbone ``name`` expects its input."""
    import keras

    mode = PREPROCESSING[name]
    if mode == "tf":
        return keras.layers.Rescaling(2.0, offset=-1.0, name="preprocess")(x)
    if mode == "pixels":
        return keras.layers.Rescaling(255.0, name="preprocess")(x)
    if mode == "torch":
        scale = [1.0 / s for s in _TORCH_STD]
        offset = [-m / s for m, s in zip(_TORCH_MEAN, _TORCH_STD)]
        return keras.layers.Rescaling(scale, offset=offset, name="preprocess")(x)
    # caffe: RGB -> BGR (a grayscale image repeated into 3 channels is its own flip)
    if rgb:
        x = keras.ops.flip(x, axis=-1)
    return keras.layers.Rescaling(255.0, offset=[-m for m in _CAFFE_MEAN_BGR], name="preprocess")(x)


def make_backbone(model: ModelConfig) -> Any:
    """The keras.applications network, named ``model.backbone``, with ``model.weights``
    loaded and ``model.freeze`` applied; its layer names do not depend on what else this
    process has built."""
    import keras

    size = model.input_size
    kwargs: dict[str, Any] = {
        "include_top": False,
        "weights": None,
        "input_shape": (size, size, 3),
        "pooling": "avg",
        "name": model.backbone,
    }
    if model.backbone.startswith("MobileNetV3"):
        kwargs["include_preprocessing"] = False
    backbone = getattr(keras.applications, model.backbone)(**kwargs)
    canonical_names(backbone)
    if model.weights != "none":
        load_backbone_weights(backbone, model)
    apply_freeze(backbone, model.freeze)
    unfreeze_count(backbone, model.fine_tune.unfreeze)  # refused here, before any run opens
    return backbone


def load_backbone_weights(backbone: Any, model: ModelConfig) -> None:
    """``model.weights`` into ``backbone``; a missing file, or one that does not fit, is one
    :class:`ConfigError` line."""
    path = Path(model.weights)
    expected = backbone_weights.expected(model.backbone)
    if not path.is_file():
        raise ConfigError(bad_value("model.weights", model.weights, f"{expected}; no such file"))
    with warnings.catch_warnings(record=True) as caught:
        # Keras warns once per part of the network it cannot match (dozens of lines for a
        # wrong file) before it raises; a load that only warned left those parts at random.
        warnings.simplefilter("always")
        try:
            backbone.load_weights(str(path))
            reason = ""
        except Exception as exc:  # noqa: BLE001 - Keras says ValueError, KeyError, OSError, h5py errors
            reason = flat_message(exc)
    skipped = [str(w.message) for w in caught if re.search(r"could not be loaded|freshly-initialized", str(w.message))]
    if not reason and skipped:
        reason = f"{len(skipped)} parts of the network are not in the file, e.g. {' '.join(skipped[0].split())}"
    if reason:  # the whole line (Keras' own message included), and the network it does fit
        reason = backbone_weights.misfit(path, model.backbone) or reason
        raise ConfigError(bad_value("model.weights", model.weights, f"{expected}; loading failed: {reason}"))


def _freeze_index(backbone: Any, freeze: str) -> int:
    """The index of the backbone layer that ``model.freeze`` names (by name or index)."""
    layers = backbone.layers
    last = len(layers) - 1
    if re.fullmatch(r"-?\d+", freeze.strip()):
        if not 0 <= int(freeze) <= last:
            allowed = f"all, none, a layer name or an index in 0..{last} ({backbone.name} has {last + 1} layers)"
            raise ConfigError(bad_value("model.freeze", freeze, allowed))
        return int(freeze)
    for i, layer in enumerate(layers):
        if layer.name == freeze:
            return i
    examples = ", ".join(layer.name for layer in layers[1:4])
    allowed = f"all, none, an index in 0..{last} or a layer name of {backbone.name} (e.g. {examples})"
    raise ConfigError(bad_value("model.freeze", freeze, allowed))


def apply_freeze(backbone: Any, freeze: str) -> None:
    """Phase 1: ``all`` frozen, ``none`` trainable, or the layers up to and including the one
    ``freeze`` names (its name or index) frozen and the rest trainable."""
    backbone.trainable = True
    if freeze == "all":
        backbone.trainable = False
    elif freeze != "none":
        for layer in backbone.layers[: _freeze_index(backbone, freeze) + 1]:
            layer.trainable = False


def unfreeze_count(backbone: Any, unfreeze: str) -> int:
    """How many top layers ``model.fine_tune.unfreeze`` makes trainable in phase 2."""
    layers = len(backbone.layers)
    if unfreeze == "all":
        return layers
    if not 1 <= int(unfreeze) <= layers:
        allowed = f"all or a number of top layers in 1..{layers} ({backbone.name} has {layers})"
        raise ConfigError(bad_value("model.fine_tune.unfreeze", unfreeze, allowed))
    return int(unfreeze)


def find_backbone(model: Any, config: ModelConfig) -> Any:
    """The backbone inside a model :func:`build_backbone` made (it is named after its class)."""
    return model.get_layer(config.backbone)


def set_fine_tune(backbone: Any, unfreeze: str) -> None:
    """Phase 2: the top ``unfreeze`` layers (or all) trainable, the ones below frozen, and
    every BatchNormalization layer frozen, so that it keeps normalizing with its moving
    statistics (inference mode) and never updates them on the small fine-tuning batches."""
    import keras

    count = unfreeze_count(backbone, unfreeze)
    backbone.trainable = True
    layers = backbone.layers
    for layer in layers[: len(layers) - count]:
        layer.trainable = False
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: the prefix of a layer's automatic name."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def canonical_names(model: Any) -> None:
    """Rename the automatically named operations of a keras.applications ``model`` as a fresh
    process would name them: ``re_lu``, ``re_lu_1``, ... in graph order.

    Keras numbers automatic names with process-wide counters, so a second build in one
    process (a study, a test) would save ``re_lu_14`` where the first saved ``re_lu``: a
    different file for the same model. A name counts as automatic when it is its class's
    prefix, optionally with a number (keras.applications names none of its layers so)."""
    counts: dict[str, int] = defaultdict(int)
    for op in model.operations:
        prefix = _snake(type(op).__name__)
        if re.fullmatch(rf"{re.escape(prefix)}(_\d+)?", op.name):
            n = counts[prefix]
            counts[prefix] += 1
            op.name = prefix if n == 0 else f"{prefix}_{n}"
    names = [op.name for op in model.operations]
    if len(set(names)) != len(names):  # pragma: no cover - an explicit name that looks automatic
        dup = sorted({n for n in names if names.count(n) > 1})
        raise RuntimeError(f"{model.name}: layer names collide after renaming: {dup[:5]}")
