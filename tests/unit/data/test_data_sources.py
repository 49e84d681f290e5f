"""Loaders on tiny generated data, and the one-line errors for every bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gapline.core.errors import DataError
from gapline.data.bundled import load_digits
from gapline.data.dataset import Dataset, validate_dataset
from gapline.data.images import load_image_folder
from gapline.data.sources import load_csv, load_npz
from gapline.data.table import Roles


def _error(fn, *args, **kwargs) -> str:
    """Run fn expecting a DataError; return its message after checking it is one line."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


# ------------------------------------------------------------------ digits


def test_load_digits_shape_and_scale() -> None:
    from sklearn.datasets import load_digits as sk_digits

    ds = load_digits()
    assert ds.x.shape == (1797, 8, 8, 1) and ds.x.dtype == np.uint8 and ds.pixel_max == 240
    assert ds.y.dtype == np.int64 and set(np.unique(ds.y)) == set(range(10))
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert ds.kind == "image" and ds.skipped == 0
    assert set(np.unique(ds.x).tolist()) == set(range(0, 241, 15))  # every 0..16 level, exact
    # scaled by pixel_max, the same [0, 1] values as the old x / 16
    np.testing.assert_allclose(ds.x[..., 0] / np.float32(240), sk_digits().images / 16, rtol=1e-6)
    validate_dataset(ds, "digits")


# ------------------------------------------------------------------ npz


def test_npz_3d_uint8_images_kept_as_pixels_and_channel_added(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    x = np.full((4, 5, 6), 255, dtype=np.uint8)
    x[0] = 0
    x[1, 0, 0] = 7
    np.savez(p, x=x, y=np.array([1, 0, 1, 0]))
    ds = load_npz(p)
    assert ds.kind == "image" and ds.x.shape == (4, 5, 6, 1) and ds.x.dtype == np.uint8
    assert ds.pixel_max == 255
    np.testing.assert_array_equal(ds.x[..., 0], x)
    assert ds.class_names == ("0", "1") and ds.y.tolist() == [1, 0, 1, 0]


def test_npz_4d_float_in_unit_range_kept(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    x = np.linspace(0, 1, 4 * 3 * 3 * 3, dtype=np.float64).reshape(4, 3, 3, 3)
    np.savez(p, x=x, y=np.array([0, 1, 2, 0]))
    ds = load_npz(p)
    assert ds.x.shape == (4, 3, 3, 3) and ds.x.dtype == np.float32 and ds.pixel_max == 0
    np.testing.assert_allclose(ds.x, x, rtol=1e-6)
    assert ds.class_names == ("0", "1", "2")


def test_npz_4d_float_0_255_scaled(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.full((2, 2, 2, 3), 127.5), y=np.array([0, 1]))
    ds = load_npz(p)
    assert ds.x.max() == pytest.approx(0.5) and ds.x.dtype == np.float32 and ds.pixel_max == 0


@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.int8])
def test_npz_other_integer_images_scaled_to_float(tmp_path: Path, dtype: type) -> None:
    # only uint8 stays pixels; other integers in 0..255 are divided by 255, as before
    p = tmp_path / "d.npz"
    x = np.zeros((2, 3, 3), dtype=dtype)
    x[1] = 51
    np.savez(p, x=x, y=np.array([0, 1]))
    ds = load_npz(p)
    assert ds.x.dtype == np.float32 and ds.pixel_max == 0 and ds.x.shape == (2, 3, 3, 1)
    assert ds.x[1].max() == pytest.approx(0.2) and ds.x[0].max() == 0.0


def test_npz_2d_tabular_not_scaled_string_labels(tmp_path: Path) -> None:
    p = tmp_path / "t.npz"
    x = np.array([[10.0, -3.0], [200.0, 4.0], [1.0, 2.0]])
    np.savez(p, x=x, y=np.array(["dog", "cat", "dog"]))
    ds = load_npz(p)
    assert ds.kind == "tabular" and ds.x.shape == (3, 2) and ds.x.dtype == np.float32 and ds.pixel_max == 0
    np.testing.assert_allclose(ds.x, x)
    assert ds.class_names == ("cat", "dog") and ds.y.tolist() == [1, 0, 1]
    np.savez(p, x=np.array([[10, 3], [200, 4], [1, 2]], np.uint8), y=np.array([0, 1, 0]))  # not pixels
    ds = load_npz(p)
    assert ds.x.dtype == np.float32 and ds.pixel_max == 0 and ds.x.max() == 200


def test_npz_sparse_int_labels_and_float_labels(tmp_path: Path) -> None:
    p = tmp_path / "t.npz"
    np.savez(p, x=np.zeros((3, 2)), y=np.array([7, 3, 7]))
    ds = load_npz(p)
    assert ds.class_names == ("3", "7") and ds.y.tolist() == [1, 0, 1]
    np.savez(p, x=np.zeros((3, 2)), y=np.array([1.0, 2.0, 1.0]))
    assert load_npz(p).class_names == ("1", "2")


def test_npz_missing_path() -> None:
    msg = _error(load_npz, "/no/such/file.npz")
    assert msg.startswith("data.path='/no/such/file.npz' does not exist: expected")


def test_npz_missing_key(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((2, 2)), labels=np.array([0, 1]))
    msg = _error(load_npz, p)
    assert str(p) in msg and "'y'" in msg and "['labels', 'x']" in msg


def test_npz_length_mismatch(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((3, 2)), y=np.array([0, 1]))
    msg = _error(load_npz, p)
    assert str(p) in msg and "len(x)=3" in msg and "len(y)=2" in msg


@pytest.mark.parametrize("shape", [(4,), (2, 2, 2, 2, 1)])
def test_npz_bad_ndim(tmp_path: Path, shape: tuple[int, ...]) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros(shape), y=np.arange(shape[0]) % 2)
    msg = _error(load_npz, p)
    assert f"ndim={len(shape)}" in msg and str(p) in msg and "expected 2" in msg


def test_npz_string_features_and_out_of_range_images(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.array([["a", "b"], ["c", "d"]]), y=np.array([0, 1]))
    assert "'<U1'" in _error(load_npz, p)
    np.savez(p, x=np.full((2, 2, 2), 300, dtype=np.uint16), y=np.array([0, 1]))
    assert "300" in _error(load_npz, p)


def test_npz_object_array_and_garbage(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((2, 2)), y=np.array([0, "a"], dtype=object))
    assert str(p) in _error(load_npz, p)
    p.write_bytes(b"garbage")
    assert str(p) in _error(load_npz, p)


# ------------------------------------------------------------------ csv


def test_csv_loads_tabular(tmp_path: Path) -> None:
    p = tmp_path / "iris.csv"
    p.write_text("a,b,species\n1,2.5,setosa\n3,4,virginica\n5,6,setosa\n")
    ds = load_csv(p, "species")
    assert ds.kind == "tabular" and ds.x.shape == (3, 2) and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x, [[1, 2.5], [3, 4], [5, 6]])
    assert ds.class_names == ("setosa", "virginica") and ds.y.tolist() == [0, 1, 0]


def test_csv_label_column_first_and_int_labels(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("label,f\n2,0.1\n0,0.2\n")
    ds = load_csv(p, "label")
    assert ds.class_names == ("0", "2") and ds.y.tolist() == [1, 0]


def test_csv_missing_label_column(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("a,b\n1,2\n")
    msg = _error(load_csv, p, "target")
    assert "'target'" in msg and "['a', 'b']" in msg and str(p) in msg


def test_csv_text_feature_is_a_category_unless_declared_numeric(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("a,color,y\n1,2,x\n3,red,z\n")
    ds = load_csv(p, "y")
    assert [(c.name, c.kind, c.values) for c in ds.columns] == [("a", "numeric", ()), ("color", "categorical", ("2", "red"))]
    msg = _error(load_csv, p, "y", roles=Roles(numeric=("color",)))
    assert "'color'" in msg and "'red'" in msg and "row 2" in msg and str(p) in msg


def test_csv_missing_path_and_empty_file(tmp_path: Path) -> None:
    assert "does not exist" in _error(load_csv, tmp_path / "x.csv", "y")
    p = tmp_path / "empty.csv"
    p.write_text("")
    assert str(p) in _error(load_csv, p, "y")


def test_csv_missing_value_is_nan_for_the_model_to_impute(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("a,y\n1,u\n,v\n")
    ds = load_csv(p, "y")
    validate_dataset(ds, str(p))  # a table's missing cell is data
    assert np.isnan(ds.x[1, 0])
    q = tmp_path / "d.npz"  # an array's NaN is not: nothing says which feature it was
    np.savez(q, x=np.array([[1.0], [np.nan]]), y=np.array([0, 1]))
    msg = _error(validate_dataset, load_npz(q), str(q))
    assert "1 NaN" in msg and str(q) in msg


# ------------------------------------------------------------------ image folder


def _write_image(path: Path, mode: str, size: tuple[int, int], value: int = 200) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = np.full((size[1], size[0], channels), value, dtype=np.uint8)
    img = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    img.save(path, fmt)


def _make_folder(root: Path) -> Path:
    _write_image(root / "cat" / "a.png", "RGB", (10, 7))
    _write_image(root / "cat" / "b.JPG", "L", (4, 4))
    _write_image(root / "dog" / "c.png", "RGBA", (5, 9))
    _write_image(root / "dog" / "d.jpeg", "RGB", (16, 16))
    _write_image(root / "dog" / "e.png", "L", (3, 3))
    (root / "dog" / "notes.txt").write_text("ignored")
    (root / "README.md").write_text("ignored")
    return root


@pytest.mark.parametrize(("mode", "channels"), [("grayscale", 1), ("rgb", 3)])
def test_image_folder_mixed_sizes_and_modes(tmp_path: Path, mode: str, channels: int) -> None:
    root = _make_folder(tmp_path / "imgs")
    ds = load_image_folder(root, (6, 8), mode, "fail")
    assert ds.kind == "image" and ds.skipped == 0
    assert ds.x.shape == (5, 6, 8, channels) and ds.x.dtype == np.uint8 and ds.pixel_max == 255
    assert ds.class_names == ("cat", "dog") and ds.y.tolist() == [0, 0, 1, 1, 1]
    assert ds.x.mean() == pytest.approx(200, abs=5)  # JPEG is lossy
    validate_dataset(ds, str(root))


def _corrupt_folder(root: Path) -> Path:
    _make_folder(root)
    good = root / "cat" / "a.png"
    data = good.read_bytes()
    (root / "cat" / "trunc.png").write_bytes(data[: len(data) // 2])
    (root / "dog" / "junk.jpg").write_bytes(b"definitely not a jpeg")
    return root


def test_image_folder_corrupt_fail_names_file(tmp_path: Path) -> None:
    root = _corrupt_folder(tmp_path / "imgs")
    msg = _error(load_image_folder, root, (4, 4), "rgb", "fail")
    assert "trunc.png" in msg and "on_corrupt" in msg


def test_image_folder_corrupt_skip_warns_and_counts(tmp_path: Path) -> None:
    root = _corrupt_folder(tmp_path / "imgs")
    with pytest.warns(UserWarning) as record:
        ds = load_image_folder(root, (4, 4), "grayscale", "skip")
    assert ds.skipped == 2 and len(ds.x) == 5
    texts = [str(w.message) for w in record]
    assert any("trunc.png" in t for t in texts) and any("junk.jpg" in t for t in texts)
    assert all("\n" not in t for t in texts)


def test_image_folder_truncated_not_loaded_even_if_pil_flag_set(tmp_path: Path) -> None:
    from PIL import ImageFile

    root = _corrupt_folder(tmp_path / "imgs")
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        assert "trunc.png" in _error(load_image_folder, root, (4, 4), "rgb", "fail")
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def test_image_folder_structure_errors(tmp_path: Path) -> None:
    assert "does not exist" in _error(load_image_folder, tmp_path / "nope", (4, 4), "rgb", "fail")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no class subfolders" in _error(load_image_folder, empty, (4, 4), "rgb", "fail")
    (empty / "a").mkdir()
    (empty / "a" / "x.txt").write_text("no images")
    msg = _error(load_image_folder, empty, (4, 4), "rgb", "fail")
    assert str(empty) in msg and "no .png/.jpg/.jpeg" in msg
    _write_image(empty / "b" / "ok.png", "L", (2, 2))
    msg = _error(load_image_folder, empty, (4, 4), "rgb", "fail")
    assert str(empty / "a") in msg


def test_image_folder_bad_arguments(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "imgs")
    msg = _error(load_image_folder, root, (4, 4), "cmyk", "fail")
    assert msg == "data.color_mode='cmyk' is not allowed: expected 'grayscale' or 'rgb'"
    assert "data.on_corrupt='ignore'" in _error(load_image_folder, root, (4, 4), "rgb", "ignore")
    assert "data.image_size=(0, 4)" in _error(load_image_folder, root, (0, 4), "rgb", "fail")


def test_image_folder_all_corrupt_in_class(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_image(root / "a" / "ok.png", "L", (2, 2))
    (root / "b").mkdir()
    (root / "b" / "bad.png").write_bytes(b"xx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msg = _error(load_image_folder, root, (2, 2), "grayscale", "skip")
    assert str(root / "b") in msg and "no readable images" in msg


def _distinct_folder(root: Path, layout: dict[str, list[str]], size: int = 3) -> list[Path]:
    """Class folders of tiny grayscale PNGs, each file one distinct random image (a name
    ending in ``!`` is written corrupt instead); returns every file in file order."""
    rng = np.random.default_rng(7)
    files = []
    for label in sorted(layout):
        for name in sorted(layout[label]):
            f = root / label / (name.rstrip("!") + ".png")
            f.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith("!"):
                f.write_bytes(b"not a png at all")
            else:
                Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(f)
            files.append(f)
    return files


def _pixels(f: Path, mode: str = "L") -> np.ndarray:
    with Image.open(f) as im:
        arr = np.asarray(im.convert(mode))
    return arr[..., np.newaxis] if arr.ndim == 2 else arr


def test_image_folder_uint8_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i, label in enumerate(("a", "b", "b")):
        arr = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
        (tmp_path / label).mkdir(exist_ok=True)
        Image.fromarray(arr, "RGB").save(tmp_path / label / f"{i}.png")
    files = sorted(tmp_path.glob("*/*.png"))
    for mode, pil in (("rgb", "RGB"), ("grayscale", "L")):
        ds = load_image_folder(tmp_path, (5, 4), mode, "fail")
        assert ds.x.dtype == np.uint8 and ds.pixel_max == 255 and not isinstance(ds.x, np.memmap)
        np.testing.assert_array_equal(ds.x, np.stack([_pixels(f, pil) for f in files]))
        assert ds.y.tolist() == [0, 1, 1]


def test_image_folder_16_bit_scaled_and_rounded_to_0_255(tmp_path: Path) -> None:
    values = np.array([[0, 257], [32768, 65535]], dtype=np.uint16)  # /65535*255: 0, 1, 127.5, 255
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.fromarray(values).save(tmp_path / label / "deep.png")
    with Image.open(tmp_path / "a" / "deep.png") as im:
        assert im.mode.startswith("I")  # really read as 16-bit
    ds = load_image_folder(tmp_path, (2, 2), "rgb", "fail")
    assert ds.x.dtype == np.uint8 and ds.x.shape == (2, 2, 2, 3)
    assert ds.x[0, ..., 0].tolist() == [[0, 1], [128, 255]] and (ds.x[..., 1] == ds.x[..., 0]).all()


def test_image_folder_scratch_is_a_read_only_memmap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gapline.data.images as images

    monkeypatch.setattr(images, "CHUNK", 2)
    root = tmp_path / "imgs"
    files = _distinct_folder(root, {"a": ["0", "1", "2!"], "b": ["3", "4"]})
    scratch = tmp_path / "scratch"
    with pytest.warns(UserWarning):
        ds = load_image_folder(root, (3, 3), "grayscale", "skip", scratch=scratch, workers=1)
    assert isinstance(ds.x, np.memmap) and not ds.x.flags.writeable
    assert Path(ds.x.filename) == scratch / "decoded.npy"
    assert np.load(scratch / "decoded.npy", mmap_mode="r").shape == (5, 3, 3, 1)  # a row per file
    kept = [f for i, f in enumerate(files) if i != 2]
    np.testing.assert_array_equal(ds.x, np.stack([_pixels(f) for f in kept]))
    assert ds.y.tolist() == [0, 0, 1, 1] and ds.skipped == 1
    with pytest.raises(ValueError):
        ds.x[0, 0, 0, 0] = 1
    again = load_image_folder(root / "b" / "..", (3, 3), "grayscale", "fail", classes=["b"], scratch=scratch)
    np.testing.assert_array_equal(ds.x[2:], again.x)  # the earlier map keeps its data
    assert len(np.load(scratch / "decoded.npy", mmap_mode="r")) == 2


def test_image_folder_skip_compacts_rows_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gapline.data.images as images

    monkeypatch.setattr(images, "CHUNK", 2)  # the kept rows move across chunks
    root = tmp_path / "imgs"
    layout = {"a": ["0", "1!", "2", "3!", "4"], "b": ["5!", "6", "7", "8!", "9"]}
    files = _distinct_folder(root, layout)
    bad = [i for i, name in enumerate(n for k in sorted(layout) for n in layout[k]) if name.endswith("!")]
    with pytest.warns(UserWarning) as record:
        ds = load_image_folder(root, (3, 3), "grayscale", "skip", workers=1)
    kept = [f for i, f in enumerate(files) if i not in bad]
    np.testing.assert_array_equal(ds.x, np.stack([_pixels(f) for f in kept]))
    assert ds.y.tolist() == [0, 0, 0, 1, 1, 1] and ds.skipped == 4
    assert [str(w.message).split("'")[1] for w in record] == [str(files[i]) for i in bad]
    assert all(w.filename == __file__ for w in record)  # pointing at the caller


def test_image_folder_classes_decodes_only_those_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "imgs"
    files = _distinct_folder(root, {"a": ["0", "1"], "b": ["2", "3!"], "c": ["4"]})
    opened: list[str] = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(Path(fp).name)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    ds = load_image_folder(root, (3, 3), "grayscale", "fail", classes=("c", "a"))  # b's corrupt file unread
    assert opened == ["0.png", "1.png", "4.png"]
    assert ds.class_names == ("a", "b", "c") and ds.y.tolist() == [0, 0, 2]
    np.testing.assert_array_equal(ds.x, np.stack([_pixels(files[i]) for i in (0, 1, 4)]))
    assert "3.png" in _error(load_image_folder, root, (3, 3), "grayscale", "fail", classes=["b"])


def test_image_folder_bad_workers(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "imgs")
    msg = _error(load_image_folder, root, (4, 4), "rgb", "fail", workers=-1)
    assert msg.startswith("data.workers=-1 is not allowed: expected an integer >= 0")


def test_image_folder_workers_give_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gapline.data.images as images

    monkeypatch.setattr(images, "CHUNK", 3)
    root = tmp_path / "imgs"
    layout = {"a": [str(i) for i in range(6)] + ["6!"], "b": [str(i) for i in range(7, 14)]}
    _distinct_folder(root, layout)  # 14 files: 5 chunks, so the pool is used
    scratch = tmp_path / "scratch"
    loads = []
    for workers in (1, 2):
        with pytest.warns(UserWarning, match="6.png"):
            ds = load_image_folder(root, (3, 3), "grayscale", "skip", scratch=scratch / str(workers), workers=workers)
        loads.append(ds)
    one, two = loads
    assert one.x.tobytes() == two.x.tobytes() and one.x.shape == two.x.shape == (13, 3, 3, 1)
    assert one.y.tolist() == two.y.tolist() and one.skipped == two.skipped == 1


def test_image_folder_fail_names_the_first_corrupt_file_in_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gapline.data.images as images

    monkeypatch.setattr(images, "CHUNK", 2)
    root = tmp_path / "imgs"
    # the first corrupt file is the last of its chunk, the second the first of a later one
    _distinct_folder(root, {"a": ["0", "1", "2", "3!"], "b": ["4", "5", "6!", "7", "8"]})
    for workers in (1, 2):
        msg = _error(load_image_folder, root, (3, 3), "grayscale", "fail", scratch=tmp_path / "s", workers=workers)
        assert str(root / "a" / "3.png") in msg and "6.png" not in msg
        assert not (tmp_path / "s" / "decoded.npy").exists()  # the half-written file is removed


# ------------------------------------------------------------------ validation


def _ds(x: np.ndarray, y: list[int], names: tuple[str, ...] = ("a", "b")) -> Dataset:
    return Dataset(x=x.astype(np.float32), y=np.asarray(y, dtype=np.int64), class_names=names, kind="tabular")


def test_validate_rejects_nan_and_inf() -> None:
    x = np.zeros((4, 3))
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    x[3, 1] = -np.inf
    msg = _error(validate_dataset, _ds(x, [0, 1, 0, 1]), "my.csv")
    assert "1 NaN" in msg and "2 infinite" in msg and "'my.csv'" in msg and "sample 1" in msg


def test_validate_rejects_single_class() -> None:
    ds = _ds(np.zeros((3, 2)), [0, 0, 0], names=("3",))
    msg = _error(validate_dataset, ds, "d.npz")
    assert msg.startswith("a single-class dataset cannot be classified: found only class '3'")
    assert "d.npz" in msg


def test_validate_accepts_good_data() -> None:
    validate_dataset(_ds(np.ones((2, 2)), [0, 1]), "ok")
