"""`edge run --source` takes JSON as its --help says (alone, named, several), and the
command line's own mistakes are one line and exit 2 like every other user error."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.cli.test_cli import edge
from tests.models import DigitsModels


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "digits"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((8, 8, 3), 60 * i, np.uint8))
    return folder


def results(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_error(done: object) -> str:
    stderr = getattr(done, "stderr", "")
    assert getattr(done, "returncode", None) == 2, stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in stderr and "usage:" not in stderr, stderr
    return lines[0]


def test_a_json_source_runs(digits: DigitsModels, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    source = json.dumps({"type": "images", "path": str(images)})

    done = edge("run", str(digits.tflite["fp32"]), "--source", source, "--sink", f"jsonl:{out}")

    assert done.returncode == 0, done.stderr
    found = results(out)
    assert [r["meta"]["file"] for r in found] == ["0.png", "1.png", "2.png"]  # type: ignore[index]


def test_named_json_sources_run_as_streams(
    digits: DigitsModels, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    source = json.dumps({"type": "images", "path": str(images)})

    done = edge(
        "run",
        str(digits.tflite["fp32"]),
        "--source",
        f"left={source}",
        "--source",
        f"right={source}",
        "--sink",
        f"jsonl:{out}",
    )

    assert done.returncode == 0, done.stderr
    streams = [r["meta"]["stream"] for r in results(out)]  # type: ignore[index]
    assert sorted(streams) == ["left"] * 3 + ["right"] * 3


def test_json_that_does_not_parse_is_one_line(digits: DigitsModels) -> None:
    done = edge("run", str(digits.tflite["fp32"]), "--source", '{"type": images}')

    line = one_error(done)
    assert line.startswith("edge: error: --source '{\"type\": images}': not valid JSON")


def test_a_json_source_with_a_wrong_key_names_it(digits: DigitsModels, images: Path) -> None:
    source = json.dumps({"type": "images", "path": str(images), "fps": 5})

    line = one_error(edge("run", str(digits.tflite["fp32"]), "--source", source))

    assert "source.images.fps: unknown key" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--threads", "two"], "edge run: error: argument --threads: invalid int value"),
        (["runn"], "edge: error: argument COMMAND: invalid choice: 'runn'"),
        (["doctor", "--json", "extra"], "edge: error: unrecognized arguments: extra"),
    ],
)
def test_argument_errors_are_one_line_and_exit_2(args: list[str], expected: str) -> None:
    line = one_error(edge(*args))
    assert line.startswith(expected) and "--help" in line
