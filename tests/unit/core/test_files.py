"""Atomic outputs: complete file or nothing, never a half-written target."""

from __future__ import annotations

import builtins
import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gapline.core.files
from gapline.core.errors import DataError
from gapline.core.files import atomic_path, load_arrays, read_json, save_arrays, write_json, write_text
from gapline.models import saving


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def test_atomic_path_temp_name_keeps_suffix_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "train.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.name.startswith(".train.tmp-")
        assert tmp.name.endswith(".npz")
        assert not target.exists()
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert _leftovers(target.parent) == []


def test_atomic_path_keeps_multi_suffix(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "model.weights.h5") as tmp:
        assert tmp.name.endswith(".weights.h5")
        tmp.write_bytes(b"x")
    assert (tmp_path / "model.weights.h5").exists()


def test_atomic_path_body_raises_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_text(target, "old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new partial")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_save_and_load_arrays_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "arrays" / "train.npz"
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.array([0, 1, 1], dtype=np.int64)
    save_arrays(path, x=x, y=y)
    assert path.exists() and not (tmp_path / "arrays" / "train.npz.npz").exists()
    assert _leftovers(path.parent) == []
    loaded = load_arrays(path)
    assert set(loaded) == {"x", "y"}
    np.testing.assert_array_equal(loaded["x"], x)
    assert loaded["y"].dtype == np.int64


def test_loaded_arrays_are_exact_in_every_layout(tmp_path: Path) -> None:
    """Fortran order, strings, empty and 0-d arrays come back exactly as numpy wrote them."""
    arrays = {
        "images": np.random.default_rng(0).random((5, 4, 4, 3), dtype=np.float32),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
        "names": np.array(["zero", "one", "twenty-two"]),
        "empty": np.zeros((0, 7), dtype=np.float32),
        "scalar": np.array(3.5),
    }
    path = tmp_path / "a.npz"
    np.savez(path, **arrays)  # numpy's own writer: no help from save_arrays
    loaded = load_arrays(path)
    assert set(loaded) == set(arrays)
    for name, original in arrays.items():
        np.testing.assert_array_equal(loaded[name], original)
        assert loaded[name].dtype == original.dtype and loaded[name].shape == original.shape
    assert loaded["images"].flags.c_contiguous
    assert loaded["fortran"].flags.f_contiguous


def test_truncated_npz_is_one_line_data_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.npz"
    save_arrays(path, x=np.ones((1000, 10), dtype=np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.npz") as info:
        load_arrays(path)
    assert "\n" not in str(info.value)


def test_pickled_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, y=np.array([0, "a"], dtype=object))
    with pytest.raises(DataError, match="objects.npz") as info:
        load_arrays(path)
    assert "allow_pickle" in str(info.value) and "\n" not in str(info.value)


def test_save_arrays_without_npz_suffix_keeps_name(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    save_arrays(path, a=np.ones(2))
    assert path.exists()
    np.testing.assert_array_equal(load_arrays(path)["a"], np.ones(2))


def test_load_arrays_missing_is_one_line_data_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.npz"
    with pytest.raises(DataError) as info:
        load_arrays(path)
    msg = str(info.value)
    assert str(path) in msg and "does not exist" in msg and "\n" not in msg


def test_load_arrays_garbage_is_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="bad.npz") as info:
        load_arrays(path)
    assert "\n" not in str(info.value)


def test_write_json_format_and_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "m" / "metrics.json"
    write_json(path, {"b": np.float32(0.5), "a": [np.int64(1), 2], "p": tmp_path / "x"})
    text = path.read_text()
    assert text.endswith("}\n")
    assert text.index('"a"') < text.index('"b"')
    assert '\n  "a"' in text  # indent=2
    data = read_json(path)
    assert data["b"] == 0.5 and data["a"] == [1, 2] and data["p"] == str(tmp_path / "x")
    assert json.loads(text) == data
    assert _leftovers(path.parent) == []


def test_write_json_unserializable_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_read_json_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(DataError, match="bad.json") as info:
        read_json(bad)
    assert "\n" not in str(info.value)


def test_write_text_exact(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    write_text(path, "x\r\ny\n")
    assert path.read_bytes() == b"x\r\ny\n"


def test_atomic_dir_replaces_folder_whole_or_not_at_all(tmp_path):
    from gapline.core.files import atomic_dir

    target = tmp_path / "prepared"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # nothing visible until the body finishes
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]

    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no temp folders left


# -- the write helpers the stages call: old content or nothing, never a partial file -------

# Each writer with a payload large enough to take many write calls.
WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "write_text": ("notes.md", lambda path: write_text(path, "new line\n" * 20_000)),
    "write_json": ("metrics.json", lambda path: write_json(path, {"values": list(range(20_000))})),
    "save_arrays": ("train.npz", lambda path: save_arrays(path, x=np.arange(50_000.0), y=np.arange(50_000))),
}


class _FailingFile:
    """A file opened for writing that takes ``room`` bytes (or characters), writes the part of
    the next chunk that fits, then raises ``error``: a write that stops midway."""

    def __init__(self, real: Any, room: int, error: BaseException) -> None:
        self._real = real
        self._room = room
        self._error = error

    def write(self, data: Any) -> int:
        if len(data) > self._room:
            self._real.write(data[: self._room])
            self._real.flush()
            self._room = 0
            raise self._error
        self._room -= len(data)
        return self._real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __enter__(self) -> _FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()


def _fail_writes(error: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    """Every file gapline.core.files opens for writing fails with ``error`` after 1000 bytes."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            real = builtins.open(file, mode, *args, **kwargs)
            return _FailingFile(real, 1000, error) if "w" in mode else real

        monkeypatch.setattr(gapline.core.files, "open", open_, raising=False)

    return inject


def _fail_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    """The final rename fails (e.g. the target is a busy mount point)."""

    def replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(os, "replace", replace)


FAILURES: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], type[BaseException]]] = {
    "disk-full-midway": (_fail_writes(OSError(errno.ENOSPC, "No space left on device")), OSError),
    "ctrl-c-midway": (_fail_writes(KeyboardInterrupt()), KeyboardInterrupt),
    "rename-fails": (_fail_rename, OSError),
}


@pytest.mark.parametrize("old", [b"old complete content\n", None], ids=["over-old", "new-file"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_failed_write_leaves_old_content_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, failure: str, old: bytes | None
) -> None:
    """Whatever stops a stage's write (a full disk or Ctrl-C halfway, a failed rename), the
    target holds its old bytes or does not exist, and no temp file is left beside it."""
    name, write = WRITERS[writer]
    inject, error = FAILURES[failure]
    path = tmp_path / name
    if old is not None:
        path.write_bytes(old)
    inject(monkeypatch)
    with pytest.raises(error):  # the failure really hit this write
        write(path)
    monkeypatch.undo()
    assert (path.read_bytes() if path.exists() else None) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if old is not None else [])


def test_save_model_failing_leaves_the_old_model_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The train stage's model write: a failed rename or a Ctrl-C while the archive is being
    rewritten keeps the old models/model.keras whole, with no temp archive or folder left."""
    import keras


    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "model.keras"
    path.write_bytes(b"old model")

    _fail_rename(monkeypatch)
    with pytest.raises(OSError, match="busy"):
        saving.save_model(model, path)
    monkeypatch.undo()
    assert path.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]

    real = saving.canonicalize_keras_archive

    def interrupted(src: Path, dst: Path) -> None:
        real(src, dst)
        dst.write_bytes(dst.read_bytes()[:100])  # half the archive on disk, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(saving, "canonicalize_keras_archive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        saving.save_model(model, path)
    assert path.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
