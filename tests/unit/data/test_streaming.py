"""Data larger than memory: splits on disk round-trip exactly, every reader streams with
bounded resident memory, the streamed epoch order is the seeded one on every backend, and
multi_worker processes read disjoint shares."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from gapline.data.fingerprint import fingerprint
from gapline.data.store import RowReader, RowWriter, open_split, write_split
from gapline.train import fit
from gapline.train.resume import epoch_orders
from helpers.prepared_meta import make_meta


def _images(n: int = 50, side: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, side, side, 1), dtype=np.uint8), (np.arange(n) % 3).astype(np.int64)


def test_split_round_trips_exactly_in_chunks(tmp_path: Path) -> None:
    x, y = _images()
    rows = np.random.default_rng(1).permutation(len(y))[:37]
    split = write_split(tmp_path / "train", x, y, rows, chunk_bytes=100)  # 36 bytes a row: 2 rows a chunk
    assert isinstance(split.x, np.memmap) and not split.x.flags.writeable
    assert split.x.dtype == np.uint8 and split.x.tobytes() == x[rows].tobytes()
    np.testing.assert_array_equal(split.y, y[rows])
    again = open_split(tmp_path / "train")
    assert again.x.tobytes() == x[rows].tobytes()
    # the fingerprint streamed from the mapping equals the in-memory one
    assert fingerprint({"x": again.x, "y": again.y}) == fingerprint({"x": x[rows], "y": y[rows]})


def test_split_written_from_a_mapped_source_and_tabular_floats(tmp_path: Path) -> None:
    x, y = _images(40)
    source = write_split(tmp_path / "all", x, y)
    copied = write_split(tmp_path / "copy", source.x, source.y, np.arange(39, -1, -1), chunk_bytes=1)
    assert copied.x.tobytes() == x[::-1].tobytes()
    tab = np.random.default_rng(2).normal(size=(30, 4)).astype(np.float32)
    out = write_split(tmp_path / "tab", tab, np.arange(30, dtype=np.float32))
    assert out.x.dtype == np.float32 and out.x.tobytes() == tab.tobytes()


def test_a_missing_or_mismatched_split_is_one_line(tmp_path: Path) -> None:
    from gapline.core.errors import DataError

    with pytest.raises(DataError, match=r"x.npy.*does not exist.*dvc repro"):
        open_split(tmp_path / "nope")
    x, y = _images(10)
    write_split(tmp_path / "s", x, y)
    np.save(tmp_path / "s" / "y.npy", y[:9])
    with pytest.raises(DataError, match="10 rows in x.npy but 9 in y.npy"):
        open_split(tmp_path / "s")


def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's /proc for resident memory")
def test_row_reader_leaves_no_split_in_memory(tmp_path: Path) -> None:
    """Gathering random rows of a 48 MiB mapped split: through numpy's memory map the pages
    become this process's resident memory (the kernel maps up to 2 MiB around each 1 KiB row
    read); through RowReader (16 rows at a time, the pages dropped after each) none stay, and
    the rows are the same."""
    n, row = 3 * 2**14, 1024
    path = tmp_path / "x.npy"
    with RowWriter(path, np.dtype(np.uint8), (n, row)) as out:
        for start in range(0, n, 4096):
            out.write(start, np.full((4096, row), start // 4096, dtype=np.uint8))
    idx = np.random.default_rng(0).permutation(n)[:2000]

    def gathered(read) -> tuple[np.ndarray, int]:
        x = np.load(path, mmap_mode="r")
        before = _rss_file_kib()
        rows = read(x)
        return rows, (_rss_file_kib() - before) // 1024  # MiB

    mapped_rows, mapped_mib = gathered(lambda x: np.asarray(x[idx]))
    read_rows, read_mib = gathered(lambda x: RowReader(x, in_memory_below=0).take(idx))
    assert read_rows.tobytes() == mapped_rows.tobytes()
    assert np.array_equal(read_rows[:, 0], idx // 4096)
    assert read_mib <= 1, read_mib
    assert mapped_mib >= 2, mapped_mib  # the control: numpy's gather maps the pages it reads
    # a view (the first rows, a strided share) reads the same bytes as numpy
    x = np.load(path, mmap_mode="r")
    for view in (x[:1000], x[1:999:2]):
        for reader in (RowReader(view, in_memory_below=0), RowReader(view)):  # streamed, and read whole
            assert reader.take(np.array([0, 5, 3])).tobytes() == np.asarray(view[[0, 5, 3]]).tobytes()
            assert reader.rows(2, 7).tobytes() == np.asarray(view[2:7]).tobytes()


def test_streamed_epoch_order_is_the_seeded_order_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The TensorFlow pipeline and the PyDataset (JAX) both yield epoch e in the permutation
    seeded by (seed, e), from any start epoch: what makes resume bit-exact."""
    import keras

    n, batch, epochs, seed = 23, 5, 4, 9
    x = np.arange(n, dtype=np.float32)[:, None]  # each row holds its own index
    y = np.zeros(n, dtype=np.float32)
    steps = fit.steps_per_epoch(n, batch)
    for start in (0, 2):
        want = np.concatenate(list(epoch_orders(n, epochs, seed, start)))
        tf_data = fit.fit_data(x, y, batch, seed, epochs, start)
        seen = np.concatenate([np.asarray(b[0])[:, 0] for b in tf_data["x"]]).astype(int)
        np.testing.assert_array_equal(seen, want)
        monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
        py = fit.fit_data(x, y, batch, seed, epochs, start)["x"]
        monkeypatch.undo()
        assert py.num_batches is None  # one endless stream: fit's steps_per_epoch cuts it
        got = np.concatenate([py[i][0][:, 0] for i in range((epochs - start) * steps)]).astype(int)
        np.testing.assert_array_equal(got, want)


def test_steps_per_execution_never_crosses_an_epoch() -> None:
    from gapline.train.fit import steps_per_execution

    assert steps_per_execution(40, 64) == 40
    assert steps_per_execution(196, 64) == 49
    assert steps_per_execution(197, 64) == 1
    assert steps_per_execution(6, 4) == 3
    assert steps_per_execution(1, 64) == 1


def test_a_fit_whose_epoch_is_not_a_multiple_of_the_call_runs_whole_epochs(make_tiny_images, cpu_runtime) -> None:
    """6 steps an epoch and 4 asked per call: each call stays inside its epoch (3 steps), so
    the stream ends exactly with the last epoch (Keras warns 'ran out of data' otherwise)."""
    from gapline.config.checks import from_container
    from gapline.train.fit import train_model

    cpu_runtime(3)
    x, y = make_tiny_images(24, size=4, classes=2, seed=1)
    cfg = from_container(
        {
            "model": {"family": "mlp", "hidden_units": [4]},
            "regularization": {"early_stopping": {"enabled": False}},
            "train": {"epochs": 3, "batch_size": 4, "steps_per_execution": 4, "accelerator": "cpu"},
            "tracking": {"enabled": False},
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_model(cfg, x, y, x[:8], y[:8], 2)
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert result.epochs_run == 3 and int(result.model.optimizer.iterations.numpy()) == 18
    assert result.model.steps_per_execution == 3


def test_multi_worker_processes_read_disjoint_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    n, batch, seed = 22, 4, 1
    x = np.arange(n, dtype=np.float32)[:, None]
    y = np.zeros(n, dtype=np.float32)
    read: dict[int, set[int]] = {}
    for index in (0, 1):
        monkeypatch.setattr(fit, "process", lambda index=index: (index, 2))
        data = fit.fit_data(x, y, batch, seed, 2, 0)
        read[index] = {int(v) for b in data["x"] for v in np.asarray(b[0])[:, 0]}
    assert read[0].isdisjoint(read[1])
    assert read[0] | read[1] == set(range(n))  # 22 rows, 11 each: nothing dropped


def test_augment_streams_the_same_bytes_whatever_the_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gapline.config.schema import AugmentConfig
    from gapline.data import augment as aug

    x, y = _images(600, side=8)
    cfg = AugmentConfig(copies=2, shift=0.1, rotation=10.0, noise_std=0.02, seed=4)
    in_memory, labels = aug.augment_dataset(x, y, cfg, "image", 255)
    assert in_memory.dtype == np.uint8 and len(in_memory) == 1800
    assert in_memory[:600].tobytes() == x.tobytes()
    assert not np.array_equal(in_memory[600:1200], x)
    monkeypatch.setattr(aug, "CHUNK_BYTES", 64 * 300)  # 300 rows of 64 bytes: chunks cut the blocks
    streamed = aug.augment_to(tmp_path / "train", x, y, cfg, "image", 255)
    assert isinstance(streamed.x, np.memmap)
    assert streamed.x.tobytes() == in_memory.tobytes()
    np.testing.assert_array_equal(streamed.y, labels)
    # no copies: the prepared file itself, hard-linked (no disk), not rewritten
    prepared = write_split(tmp_path / "prepared", x, y)
    same = aug.augment_to(tmp_path / "none", prepared.x, prepared.y, AugmentConfig(copies=0), "image", 255)
    assert same.x.tobytes() == x.tobytes() and np.array_equal(same.y, y)
    assert (tmp_path / "none" / "x.npy").stat().st_ino == (tmp_path / "prepared" / "x.npy").stat().st_ino


def test_prepare_writes_uint8_pixels_that_the_model_scales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image folder is decoded to a scratch mapping inside the new prepared folder (gone
    after), written as uint8 splits; the model's first layer divides by meta's pixel_max."""
    from PIL import Image

    from gapline.config.checks import from_container
    from gapline.models.build import build_model
    from gapline.stages.prepare import prepare

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (5, 5), dtype=np.uint8), "L").save(tmp_path / "imgs" / cls / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    cfg = from_container({"data": {"source": "image_folder", "path": "imgs", "image_size": [5, 5]}})
    meta = prepare(cfg)
    prepared = tmp_path / "data" / "prepared"
    assert sorted(p.name for p in prepared.iterdir()) == ["meta.json", "test", "train", "val"]
    assert meta.pixel_max == 255
    train = open_split(prepared / "train")
    assert train.x.dtype == np.uint8 and train.x.shape[1:] == (5, 5, 1)
    model = build_model((5, 5, 1), meta.task_spec(), cfg.model, cfg.regularization, cfg.augment.online, 0)
    first = model.layers[1]
    assert first.name == "pixel_scale" and first.scale == pytest.approx(1 / 255)



STAGE_SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
from omegaconf import OmegaConf
from gapline.config.checks import from_container
from gapline.data.store import RowWriter
from gapline.stages.evaluate import evaluate
from gapline.stages.train import train

rows = {"train": int(sys.argv[1]), "val": int(sys.argv[1]) // 8, "test": int(sys.argv[1]) // 8}
rng = np.random.default_rng(0)
for name, n in rows.items():  # written a chunk at a time: this process never holds a split
    out = Path("data/prepared") / name
    out.mkdir(parents=True)
    with RowWriter(out / "x.npy", np.dtype(np.uint8), (n, 64, 64, 1)) as x:
        for start in range(0, n, 2048):
            x.write(start, rng.integers(0, 256, size=(min(2048, n - start), 64, 64, 1), dtype=np.uint8))
    np.save(out / "y.npy", (np.arange(n) % 10).astype(np.int64))
Path("data/augmented").mkdir()
Path("data/augmented/train").symlink_to(Path("data/prepared/train").resolve())
meta = {"source": "npz", "source_digest": "md5:0", "kind": "image", "task": "multiclass",
        "class_names": [str(i) for i in range(10)], "input_shape": [64, 64, 1], "counts": rows,
        "skipped_corrupt": 0, "fingerprints": {n: "sha256:0" for n in rows}, "fingerprint": "sha256:0", "pixel_max": 255}
Path("data/prepared/meta.json").write_text(json.dumps(meta))
cfg = from_container({"model": {"family": "mlp", "hidden_units": [8]},
                      "regularization": {"early_stopping": {"enabled": False}},
                      "train": {"epochs": 2, "batch_size": 256, "accelerator": "cpu", "resume": False},
                      "tracking": {"enabled": False}})
node = OmegaConf.structured(cfg)
train(cfg, OmegaConf.to_yaml(node), OmegaConf.to_container(node))
evaluate(cfg)
hwm = [lyr for lyr in Path("/proc/self/status").read_text().splitlines() if lyr.startswith("VmHWM:")][0]
print("PEAK_KIB", int(hwm.split()[1]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's /proc for peak memory")
def test_train_and_evaluate_memory_does_not_grow_with_the_dataset(tmp_path: Path) -> None:
    """The train and evaluate stages on a 320 MiB image set (train 256 MiB, val and test 32 MiB
    each, memory-mapped) peak within a small buffer of the same stages on a 16× smaller set:
    no stage ever holds a split (each would add its size to the peak)."""
    import subprocess
    import sys

    peaks = {}
    for rows in (4096, 65536):
        work = tmp_path / str(rows)
        work.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", STAGE_SCRIPT, str(rows)], cwd=work, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        peaks[rows] = int(done.stdout.split("PEAK_KIB")[-1]) / 1024  # MiB
    grown = peaks[65536] - peaks[4096]
    data_grown = (65536 - 4096) * 1.25 * 4096 / 2**20  # 300 MiB more data
    assert grown < 0.25 * data_grown, (peaks, grown, data_grown)


def test_a_trial_streams_from_the_prepared_folder_only_when_it_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tiny_images, cpu_runtime
) -> None:
    """A sweep job or study arm whose data settings and source match data/prepared reads the
    prepared splits (the same bytes it would split in memory, so the same result); another
    data setting, or an edited source, splits the source in memory."""
    from gapline.config.checks import from_container
    from gapline.experiments import trial
    from gapline.stages.prepare import prepare

    x, y = make_tiny_images(60, size=4, classes=3, seed=0)
    np.savez(tmp_path / "d.npz", x=(x * 255).astype(np.uint8), y=y)
    monkeypatch.chdir(tmp_path)

    def cfg(**data):
        return from_container(
            {
                "data": {"source": "npz", "path": "d.npz", **data},
                "augment": {"copies": 1, "noise_std": 0.05, "seed": 2},
                "model": {"family": "mlp", "hidden_units": [8]},
                "regularization": {"early_stopping": {"enabled": False}},
                "train": {"epochs": 2, "batch_size": 16, "accelerator": "cpu", "seed": 3},
                "tracking": {"enabled": False},
            }
        )

    cpu_runtime(0)
    in_memory = trial.run_trial(cfg())
    prepare(cfg())
    assert trial.matching_prepared(cfg()) == Path("data/prepared")
    assert trial.matching_prepared(cfg(train_fraction=0.5)) is None
    assert trial.matching_prepared(cfg(workers=1)) == Path("data/prepared")  # decoding processes change nothing

    def no_split(*args, **kwargs):
        raise AssertionError("split the source in memory")

    monkeypatch.setattr("gapline.data.prepare.split_source", no_split)
    cpu_runtime(0)
    streamed = trial.run_trial(cfg())
    assert streamed.metrics == in_memory.metrics and streamed.fit_samples == in_memory.fit_samples == 2 * streamed.train_samples
    assert not list(Path(".gapline").glob("trial-augmented-*"))  # the streamed copies are gone
    np.savez(tmp_path / "d.npz", x=(x * 200).astype(np.uint8), y=y)  # the source changed: prepared is stale
    assert trial.matching_prepared(cfg()) is None


def test_a_split_read_while_a_new_one_is_renamed_in_keeps_reading_its_own_file(tmp_path: Path) -> None:
    """dvc repro renames a new data/prepared into place while a sweep still reads the old one:
    rows come from the file that was opened, never new rows next to old labels."""
    from gapline.core.files import atomic_dir

    x, y = _images(30)
    with atomic_dir(tmp_path / "prepared") as tmp:
        write_split(tmp / "train", x, y)
    old = open_split(tmp_path / "prepared" / "train")
    with atomic_dir(tmp_path / "prepared") as tmp:
        write_split(tmp / "train", 255 - x, y[::-1])
    for reader in (RowReader(old.x, in_memory_below=0), RowReader(old.x[:20], in_memory_below=0), RowReader(old.x)):
        assert reader.take(np.array([3, 0])).tobytes() == x[[3, 0]].tobytes()
    assert open_split(tmp_path / "prepared" / "train").x[0].tobytes() == (255 - x[0]).tobytes()


def test_multi_worker_calls_are_sized_on_each_process_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """1025 rows, batch 64, 2 processes: each runs 16 steps an epoch (512 rows, 32 a step),
    not the 17 of one process, so a compiled call of 17 steps would cross its epoch."""
    assert fit.epoch_steps(1025, 64) == 17
    monkeypatch.setattr(fit, "process", lambda: (0, 2))
    assert fit.epoch_steps(1025, 64) == 16
    assert fit.steps_per_execution(fit.epoch_steps(1025, 64), 64) == 16


def test_a_champion_trained_on_floats_is_scored_on_the_same_pixels(cpu_runtime) -> None:
    """A champion registered before images were stored as uint8 pixels has no pixel_scale
    layer: retrain puts the scale in front of it, so it sees what it was trained on."""
    from gapline.config.checks import from_container
    from gapline.config.tasks import TaskSpec
    from gapline.retrain.decision import takes_pixels
    from gapline.train.fit import build_compiled

    cpu_runtime(0)
    cfg = from_container({"model": {"family": "mlp", "hidden_units": [4]}, "tracking": {"enabled": False}})
    old = build_compiled(cfg, (4, 4, 1), TaskSpec("multiclass", ("a", "b")), 10)  # floats in [0, 1]
    x = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 1), dtype=np.uint8)
    scaled = takes_pixels(old, make_meta(pixel_max=255))
    np.testing.assert_allclose(scaled.predict_on_batch(x), old.predict_on_batch(x / np.float32(255)), rtol=1e-6)
    assert scaled.loss is not None
    new = build_compiled(cfg, (4, 4, 1), TaskSpec("multiclass", ("a", "b"), pixel_max=255), 10)
    assert takes_pixels(new, make_meta(pixel_max=255)) is new and takes_pixels(old, make_meta(kind="tabular")) is old


def test_decoding_processes_change_no_digest() -> None:
    """data.workers writes the same bytes: it is not a config change for retraining."""
    from gapline.config.checks import from_container
    from gapline.retrain.state import config_digest

    assert config_digest(from_container({"data": {"workers": 1}})) == config_digest(from_container({}))
    assert config_digest(from_container({"data": {"seed": 1}})) != config_digest(from_container({}))
