"""What drift is tested on: the session's signed digits bundle installed the way
``edge install`` does it (it carries reference statistics, the manifest's
``monitoring``), and folders of held-out digits as images, as the model was calibrated
on and inverted (a shift). The session fixtures in tests/conftest.py call these; the
monitor tests and the dashboard's browser test use them."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

SCALE = 4  # the 8x8 digits are written as 32x32 images (nearest), read back exactly
IN_DISTRIBUTION = 300  # ``normal``: this many held-out digits
SHIFT_AT = 200  # ``mixed``: this many digits as calibrated, then as many inverted ones


def write_digits(folder: Path, images: np.ndarray, prefix: str, *, invert: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        values = 1.0 - image[..., 0] if invert else image[..., 0]
        gray = np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)
        big = cv2.resize(gray, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
        assert cv2.imwrite(str(folder / f"{prefix}-{i:04d}.png"), big)


def write_digit_folders(x: np.ndarray, root: Path) -> dict[str, Path]:
    """``normal``: IN_DISTRIBUTION held-out digits ``x``; ``mixed``: SHIFT_AT of them,
    then SHIFT_AT inverted ones; ``inverted``: those inverted ones alone."""
    write_digits(root / "normal", x[:IN_DISTRIBUTION], "a")
    write_digits(root / "mixed", x[:SHIFT_AT], "a")
    write_digits(root / "mixed", x[SHIFT_AT : 2 * SHIFT_AT], "b", invert=True)
    write_digits(root / "inverted", x[SHIFT_AT : 2 * SHIFT_AT], "b", invert=True)
    return {name: root / name for name in ("normal", "mixed", "inverted")}


def install_signed(bundle: Path, keys_dir: Path, root: Path) -> Path:
    """``bundle`` installed under ``root`` (``edge install --root``: its signature checked
    against ``keys_dir``'s keys, copied to ``root/keys``, self-tested, made ``current``)."""
    from edge.install import install_bundle

    shutil.copytree(keys_dir, root / "keys")
    install_bundle(bundle, root=root)
    return root
