"""Calibration and evaluation data from real files: scikit-learn's digits as .npz, and
scikit-image's sample photos as folders of images."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as samples

from edge.errors import ConfigError, DataError
from edge.runtime.preprocess import PreprocessSpec, preprocess_image, read_image
from packager.samples.digits import digits_arrays
from packager.sources.data import Dataset, load_dataset

DIGITS_INPUT = (-1, 8, 8, 1)
PHOTO_INPUT = (1, 48, 64, 3)


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    return digits_arrays()


@pytest.fixture
def digits_npz(tmp_path: Path, digits: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "digits.npz"
    np.savez(path, x=digits["x_test"], y=digits["y_test"])
    return path


def write_image(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), bgr)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes, created out of sorted order, with 2-3 images each."""
    root = tmp_path_factory.mktemp("photos")
    for name, rgb in (("coffee", samples.coffee()), ("cat", samples.chelsea())):
        write_image(root / name / "a.png", rgb)
        write_image(root / name / "b.jpg", rgb[:, ::-1])  # mirrored
    astronaut = samples.astronaut()
    for i in range(3):
        write_image(root / "astronaut" / f"{i}.png", np.rot90(astronaut, i).copy())
    (root / "cat" / "notes.txt").write_text("not an image, ignored")
    write_image(root / "cat" / ".thumbnails" / "a.png", samples.coffee())  # hidden: ignored
    write_image(root / ".trash" / "old.png", samples.coffee())  # hidden: not a class
    return root


def snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in folder.rglob("*")}


# --- .npz ---------------------------------------------------------------------------------


def test_npz_with_labels(digits_npz: Path, digits: dict[str, np.ndarray]) -> None:
    dataset = load_dataset(digits_npz, input_shape=DIGITS_INPUT, require_labels=True)
    assert len(dataset) == len(digits["x_test"]) == 450
    assert dataset.x.dtype == np.float32 and dataset.x.shape == (450, 8, 8, 1)
    assert dataset.y is not None and dataset.y.dtype == np.int64
    np.testing.assert_array_equal(dataset.y, digits["y_test"])
    np.testing.assert_array_equal(dataset.x, digits["x_test"])
    assert dataset.labels is None and dataset.source == str(digits_npz)


def test_npz_without_labels(tmp_path: Path, digits: dict[str, np.ndarray]) -> None:
    path = tmp_path / "calib.npz"
    np.savez(path, x=digits["x_train"])
    dataset = load_dataset(path, input_shape=(1, 8, 8, 1), limit=100)
    assert len(dataset) == 100 and dataset.y is None
    np.testing.assert_array_equal(dataset.x, digits["x_train"][:100])
    with pytest.raises(
        DataError, match=r"calib\.npz: measuring accuracy .* needs labelled data"
    ) as info:
        load_dataset(path, input_shape=(1, 8, 8, 1), require_labels=True)
    assert "add an array 'y'" in str(info.value) and "sub-folder per class" in str(info.value)
    with pytest.raises(DataError, match=r"^.*calib\.npz: the accuracy gate needs labelled data"):
        load_dataset(
            path, input_shape=DIGITS_INPUT, require_labels=True, labels_for="the accuracy gate"
        )


def test_one_hot_labels_and_class_names(tmp_path: Path, digits: dict[str, np.ndarray]) -> None:
    path = tmp_path / "onehot.npz"
    names = np.array([f"digit {i}" for i in range(10)])
    np.savez(
        path, x=digits["x_test"], y=np.eye(10, dtype=np.float32)[digits["y_test"]], labels=names
    )
    dataset = load_dataset(path, input_shape=DIGITS_INPUT)
    assert dataset.y is not None
    np.testing.assert_array_equal(dataset.y, digits["y_test"])
    assert dataset.labels == tuple(f"digit {i}" for i in range(10))


def test_h_w_samples_fit_an_h_w_1_model(
    tmp_path: Path, digits: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "flat.npz"
    np.savez(path, x=digits["x_test"][..., 0], y=digits["y_test"])
    with caplog.at_level(logging.INFO, logger="packager.sources.data"):
        dataset = load_dataset(path, input_shape=DIGITS_INPUT)
    assert dataset.x.shape == (450, 8, 8, 1)
    np.testing.assert_array_equal(dataset.x, digits["x_test"])
    assert any(
        "adding the channel axis" in r.getMessage() and r.levelno == logging.INFO
        for r in caplog.records
    )
    # and for a channels-first model
    assert load_dataset(path, input_shape=(1, 1, 8, 8)).x.shape == (450, 1, 8, 8)


def test_wrong_sample_shape_names_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "calib.npz"
    np.savez(path, x=np.zeros((4, 28, 28, 1), np.float32))
    with pytest.raises(
        DataError,
        match=r"calib\.npz: samples have shape \[28, 28, 1\], the model input takes \[8, 8, 1\]",
    ):
        load_dataset(path, input_shape=DIGITS_INPUT)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"x_train": np.zeros((2, 8, 8, 1)), "y_train": np.zeros(2)},
            r"no array named 'x'.*it has x_train, y_train",
        ),
        (
            {"x": np.zeros((5, 8, 8, 1)), "y": np.zeros(4, np.int64)},
            r"x has 5 samples but y has shape \[4\]",
        ),
        (
            {"x": np.full((3, 8, 8, 1), np.nan)},
            r"NaN or infinite values in 3 sample\(s\), the first at index 0",
        ),
        ({"x": np.zeros((0, 8, 8, 1))}, r"x holds no samples"),
        ({"x": np.array([["a"] * 8] * 8)}, r"x must hold real numbers"),
        ({"x": np.zeros((2, 8, 8, 1)), "y": np.array([0.5, 1.0])}, r"y holds non-integer values"),
        ({"x": np.zeros((2, 8, 8, 1)), "y": np.array([0, -1])}, r"negative class ids"),
        (
            {"x": np.zeros((2, 8, 8, 1)), "y": np.array([0, 2]), "labels": np.array(["a", "b"])},
            r"class id 2 but labels names only 2",
        ),
    ],
)
def test_broken_npz(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=message):
        load_dataset(path, input_shape=DIGITS_INPUT)


def test_nan_in_one_sample_names_it(tmp_path: Path, digits: dict[str, np.ndarray]) -> None:
    x = digits["x_test"].copy()
    x[7, 3, 3, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    with pytest.raises(DataError, match=r"in 1 sample\(s\), the first at index 7"):
        load_dataset(tmp_path / "nan.npz", input_shape=DIGITS_INPUT)


def test_missing_unknown_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.npz: no such file or folder"):
        load_dataset(tmp_path / "nowhere.npz", input_shape=DIGITS_INPUT)
    (tmp_path / "data.csv").write_text("1,2,3\n")
    with pytest.raises(
        DataError, match=r"data\.csv: unknown data format '\.csv'; expected an \.npz"
    ):
        load_dataset(tmp_path / "data.csv", input_shape=DIGITS_INPUT)
    (tmp_path / "fake.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"fake\.npz: cannot read as an \.npz file"):
        load_dataset(tmp_path / "fake.npz", input_shape=DIGITS_INPUT)


def test_bad_options_are_refused(digits_npz: Path) -> None:
    with pytest.raises(ConfigError, match="limit must be >= 1, got 0"):
        load_dataset(digits_npz, input_shape=DIGITS_INPUT, limit=0)
    with pytest.raises(ConfigError, match="input_shape must include the batch axis"):
        load_dataset(digits_npz, input_shape=(64,))


# --- image folders ------------------------------------------------------------------------


def test_class_folders(photos: Path) -> None:
    before = snapshot(photos)
    spec = PreprocessSpec(resize="letterbox")
    dataset = load_dataset(photos, input_shape=PHOTO_INPUT, preprocess=spec, require_labels=True)
    assert dataset.labels == ("astronaut", "cat", "coffee")
    assert dataset.x.shape == (7, 48, 64, 3) and dataset.x.dtype == np.float32
    assert dataset.y is not None
    assert sorted(dataset.y.tolist()) == [0, 0, 0, 1, 1, 2, 2]
    assert dataset.y.tolist()[:3] == [0, 1, 2]  # classes in turn: any prefix covers them all
    files = {name: sorted((photos / name).glob("[!.]*.[pj][np]g")) for name in dataset.labels}
    for sample, class_id in zip(dataset.x, dataset.y, strict=True):
        candidates = [
            preprocess_image(read_image(f), spec, size=(48, 64))
            for f in files[dataset.labels[class_id]]
        ]
        assert any(np.array_equal(sample, c) for c in candidates)
    assert snapshot(photos) == before  # nothing written


def test_limit_takes_every_class_in_turn(photos: Path) -> None:
    dataset = load_dataset(photos, input_shape=PHOTO_INPUT, limit=3)
    assert dataset.y is not None and dataset.y.tolist() == [0, 1, 2]


def test_folder_in_nchw_and_gray(photos: Path, tmp_path: Path) -> None:
    nchw = load_dataset(
        photos, input_shape=(1, 3, 48, 64), preprocess=PreprocessSpec(layout="nchw")
    )
    assert nchw.x.shape == (7, 3, 48, 64)
    write_image(tmp_path / "gray" / "camera.png", samples.camera())
    gray = load_dataset(
        tmp_path / "gray", input_shape=(1, 32, 32, 1), preprocess=PreprocessSpec(color="gray")
    )
    assert gray.x.shape == (1, 32, 32, 1)
    expected = cv2.resize(samples.camera(), (32, 32), interpolation=cv2.INTER_LINEAR) / 255.0
    np.testing.assert_allclose(gray.x[0, ..., 0], expected, atol=1e-6)


def test_unlabelled_folder(tmp_path: Path) -> None:
    for name, rgb in (("cat.png", samples.chelsea()), ("coffee.jpg", samples.coffee())):
        write_image(tmp_path / name, rgb)
    dataset = load_dataset(tmp_path, input_shape=PHOTO_INPUT)
    assert len(dataset) == 2 and dataset.y is None and dataset.labels is None
    with pytest.raises(DataError, match=r"needs labelled data.*one sub-folder per class"):
        load_dataset(tmp_path, input_shape=PHOTO_INPUT, require_labels=True)


def test_many_images_with_progress_off_a_terminal(tmp_path: Path) -> None:
    camera = samples.camera()
    for i in range(60):
        write_image(
            tmp_path / "crops" / f"{i:02d}.png", camera[i * 4 : i * 4 + 64, i * 4 : i * 4 + 64]
        )
    dataset = load_dataset(tmp_path / "crops", input_shape=(1, 16, 16, 3))
    assert dataset.x.shape == (60, 16, 16, 3)


def test_broken_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError, match=r"empty: no images \(.*\.png.*\) found; expected one sub-folder"
    ):
        load_dataset(tmp_path / "empty", input_shape=PHOTO_INPUT)

    write_image(tmp_path / "unreadable" / "cat" / "ok.png", samples.chelsea())
    (tmp_path / "unreadable" / "dog").mkdir()
    (tmp_path / "unreadable" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match=r"broken\.jpg: not a readable image"):
        load_dataset(tmp_path / "unreadable", input_shape=PHOTO_INPUT)

    write_image(tmp_path / "mixed" / "cat" / "a.png", samples.chelsea())
    write_image(tmp_path / "mixed" / "stray.png", samples.coffee())
    with pytest.raises(
        DataError,
        match=r"class sub-folders and also 1 image\(s\) at the top level \(e\.g\. stray\.png\)",
    ):
        load_dataset(tmp_path / "mixed", input_shape=PHOTO_INPUT)


def test_folder_for_a_model_that_does_not_take_images(photos: Path) -> None:
    with pytest.raises(DataError, match=r"the model input takes \[1, 10\]"):
        load_dataset(photos, input_shape=(1, 10))
    with pytest.raises(ConfigError, match=r"has 1 channel\(s\) \(nhwc\); color 'rgb' needs 3"):
        load_dataset(photos, input_shape=DIGITS_INPUT)


# --- take and split -----------------------------------------------------------------------


def test_take_is_the_first_samples(digits_npz: Path) -> None:
    dataset = load_dataset(digits_npz, input_shape=DIGITS_INPUT)
    first = dataset.take(10)
    np.testing.assert_array_equal(first.x, dataset.x[:10])
    assert first.y is not None and dataset.y is not None
    np.testing.assert_array_equal(first.y, dataset.y[:10])
    assert dataset.take(10_000) is dataset
    with pytest.raises(ConfigError, match="n >= 1"):
        dataset.take(0)


def test_split_is_stratified_disjoint_and_seeded(digits_npz: Path) -> None:
    dataset = load_dataset(digits_npz, input_shape=DIGITS_INPUT)
    assert dataset.y is not None
    calib, held_out = dataset.split(0.5)
    assert len(calib) == len(held_out) == 225
    assert calib.y is not None and held_out.y is not None
    counts = np.bincount(dataset.y, minlength=10)
    assert np.all(np.abs(np.bincount(calib.y, minlength=10) - counts / 2) <= 1)

    # disjoint and complete: every sample ends up in exactly one part
    def rows(x: np.ndarray, y: np.ndarray) -> list[bytes]:
        return [r.tobytes() + bytes([c]) for r, c in zip(x, y, strict=True)]

    parts = rows(calib.x, calib.y) + rows(held_out.x, held_out.y)
    assert len(parts) == len(dataset) and set(parts) == set(rows(dataset.x, dataset.y))
    again, _ = dataset.split(0.5)
    np.testing.assert_array_equal(again.x, calib.x)
    other, _ = dataset.split(0.5, seed=1)
    assert not np.array_equal(other.x, calib.x)
    small, rest = dataset.split(0.1)
    assert (len(small), len(rest)) == (45, 405)
    assert small.y is not None and set(small.y.tolist()) == set(range(10))


def test_split_unlabelled_and_bad_fractions(tmp_path: Path) -> None:
    dataset = Dataset(np.arange(10, dtype=np.float32)[:, None], None, None, "numbers")
    first, second = dataset.split(0.3, seed=2)
    assert (len(first), len(second)) == (3, 7) and first.y is None
    assert sorted(np.concatenate([first.x, second.x])[:, 0].tolist()) == list(range(10))
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            dataset.split(fraction)
    with pytest.raises(DataError, match="too few to split"):
        dataset.take(1).split(0.5)
