"""The daemon's state files are not world-readable: `edge run` (a subprocess, umask 022,
the most permissive usual one) writes results (jsonl sink) and feedback frames 0600 in
folders 0700, and tightens a results file an older edge left 0644."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from tests.models import DigitsModels

FRAMES = 12


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_results_and_feedback_frames_are_not_world_readable(
    digits: DigitsModels, tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(digits.arrays()["x_test"][:FRAMES]):
        cv2.imwrite(str(frames / f"{i:02d}.png"), (np.squeeze(image) * 255).astype(np.uint8))
    old = tmp_path / "old" / "results.jsonl"  # an older edge's file, readable by anyone
    old.parent.mkdir()
    old.write_text("")
    old.chmod(0o644)
    new = tmp_path / "results" / "day" / "results.jsonl"  # its folders do not exist yet
    config = {
        "bundle": str(digits.tflite["int8"]),
        "install_root": str(tmp_path / "state"),
        "source": str(frames),
        "runtime": {"threads": 1},
        "sinks": [{"type": "jsonl", "path": str(new)}, {"type": "jsonl", "path": str(old)}],
        "feedback": {"enabled": True, "directory": str(tmp_path / "feedback"),
                     "band": [0.0, 1.0], "max_per_minute": 6000, "burst": 1000},
    }  # fmt: skip
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(config))
    edge = Path(sys.executable).parent / "edge"
    argv = [str(edge), "run", "--config", str(tmp_path / "edge.yaml"), "--max-frames", str(FRAMES)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120,
                          preexec_fn=lambda: os.umask(0o022))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(new.read_text().splitlines()) == FRAMES == len(old.read_text().splitlines())
    assert (mode(new), mode(new.parent), mode(new.parent.parent)) == (0o600, 0o700, 0o700)
    assert mode(old) == 0o600, "group and others lose their read bit"
    feedback = tmp_path / "feedback"
    kept = sorted(p for p in feedback.rglob("*") if p.is_file())
    assert any(p.suffix == ".jpg" for p in kept) and any(p.suffix == ".json" for p in kept)
    assert {mode(p) for p in kept} == {0o600}, "frames, sidecars and .seq"
    assert {mode(p) for p in [feedback, *feedback.iterdir()] if p.is_dir()} == {0o700}
