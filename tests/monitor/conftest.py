"""The monitor tests' bundle (the session's signed digits bundle, installed once) and
folders of digit images: as the model was calibrated on, and inverted (a shift)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.install import install_bundle
from packager.samples import DIGITS_SIDECAR
from tests.install.bundles import Kit, digits_kit
from tests.models import DigitsModels

SCALE = 4  # the 8x8 digits are written as 32x32 images (nearest), read back exactly
IN_DISTRIBUTION = 300
SHIFT_AT = 200  # the mixed folder: this many digits as calibrated, then inverted ones


def write_digits(folder: Path, images: np.ndarray, prefix: str, *, invert: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        values = 1.0 - image[..., 0] if invert else image[..., 0]
        gray = np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)
        big = cv2.resize(gray, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
        assert cv2.imwrite(str(folder / f"{prefix}-{i:04d}.png"), big)


@pytest.fixture(scope="session")
def kit(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return digits_kit(digits, tmp_path_factory)


@pytest.fixture(scope="session")
def installed(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An install root with the kit's digits bundle (it has reference statistics) current."""
    root = tmp_path_factory.mktemp("monitor-root")
    shutil.copytree(kit.keys_dir, root / "keys")
    install_bundle(kit.bundle, root=root)
    return root


@pytest.fixture(scope="session")
def images(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``normal``: held-out digits; ``mixed``: SHIFT_AT of them, then inverted digits."""
    root = tmp_path_factory.mktemp("digit-images")
    x = digits.arrays()["x_test"]
    write_digits(root / "normal", x[:IN_DISTRIBUTION], "a")
    write_digits(root / "mixed", x[:SHIFT_AT], "a")
    write_digits(root / "mixed", x[SHIFT_AT : 2 * SHIFT_AT], "b", invert=True)
    return {"normal": root / "normal", "mixed": root / "mixed"}


@pytest.fixture(scope="session")
def plain_model(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The int8 digits model as a plain .tflite with its sidecar: no reference statistics."""
    model = tmp_path_factory.mktemp("plain") / "digits-int8.tflite"
    model.write_bytes(digits.tflite["int8"].read_bytes())
    model.with_suffix(".yaml").write_text(DIGITS_SIDECAR)
    return model
