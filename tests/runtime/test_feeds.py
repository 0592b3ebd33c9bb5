"""Real inputs for `edge bench`: an image folder goes through the bundle preprocessing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import DataError
from edge.runtime import load_model
from edge.runtime.feeds import file_feed
from tests.models import DigitsModels


def test_image_folder_becomes_the_models_input(digits: DigitsModels, tmp_path: Path) -> None:
    images = digits.arrays()["x_test"][:5]
    for i, image in enumerate(images):  # 8x8 digits written as 32x32 gray PNGs
        big = cv2.resize(
            (image[..., 0] * 255).astype(np.uint8), (32, 32), interpolation=cv2.INTER_NEAREST
        )
        cv2.imwrite(str(tmp_path / f"{i}.png"), big)
    runner = load_model(digits.tflite["fp32"])
    feed = file_feed(tmp_path, runner.inputs)
    assert feed.description == f"{tmp_path} (5 samples)"
    got = np.concatenate([feed.next()[0] for _ in range(5)])
    assert got.shape == (5, 8, 8, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, images, atol=1 / 255 + 1e-6)


def test_unreadable_image_is_named(digits: DigitsModels, tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        file_feed(tmp_path, load_model(digits.tflite["fp32"]).inputs)
