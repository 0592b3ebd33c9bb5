"""CSV replay on real files: windows, timestamps, pacing, column choice, and errors
that name the file and line."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edge.sources import CsvSource, Frame, SourceError, make_source
from tests.sources.conftest import read_frames


def write_csv(path: Path, rows: int, step: float = 0.2, header: str = "timestamp,a,b,c") -> Path:
    lines = [header] + [f"{100 + i * step:.3f},{i},{10 * i},{-i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def replay(config: CsvSource) -> list[Frame]:
    source = make_source(config)
    source.open()
    frames = read_frames(source)
    source.close()
    return frames


def test_windows_carry_the_file_time_of_their_last_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", 20)
    frames = replay(CsvSource(path=path, window=5))
    assert len(frames) == 4
    assert frames[0].data.tolist() == [[i, 10 * i, -i] for i in range(5)]
    assert [f.timestamp for f in frames] == pytest.approx([100.8, 101.8, 102.8, 103.8])
    assert [f.meta["line"] for f in frames] == [6, 11, 16, 21]
    assert frames[0].source == f"csv:{path}" and frames[0].kind == "samples"


def test_columns_choose_and_order_the_channels(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", 6)
    frames = replay(CsvSource(path=path, columns=["c", "a"], window=3, stride=2))
    assert [f.data.tolist() for f in frames] == [
        [[0, 0], [-1, 1], [-2, 2]],
        [[-2, 2], [-3, 3], [-4, 4]],
    ]  # the rows left over (5) make no complete window


def test_realtime_replays_at_speed_times_the_file_clock(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", 26)  # 0.2 s apart: 5 s of file time
    source = make_source(CsvSource(path=path, window=5, realtime=True, speed=10))
    source.open()
    start = time.monotonic()
    arrivals = []
    while source.read() is not None:
        arrivals.append(time.monotonic() - start)
    source.close()
    due = [(5 * k + 4) * 0.2 / 10 for k in range(5)]  # last row of window k, file time / 10
    assert arrivals == pytest.approx(due, abs=0.04)
    assert arrivals[-1] >= due[-1] - 0.002


def test_a_file_without_the_default_timestamp_column_uses_the_wall_clock(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("x,y\n1,2\n3,4\n")
    before = time.time()
    frames = replay(CsvSource(path=path, window=2))
    assert frames[0].data.tolist() == [[1, 2], [3, 4]]
    assert before <= frames[0].timestamp <= time.time()


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("timestamp,a\n0,1\n0.1,oops\n", {}, r"bad\.csv:3: column 'a': 'oops' is not a finite"),
        ("timestamp,a\n0,1\n0.1,1,2\n", {}, r"bad\.csv:3: 3 field\(s\), the header has 2"),
        ("timestamp,a\n0,1\n0.1,nan\n", {}, r"bad\.csv:3: column 'a': 'nan'"),
        ("1,2\n3,4\n", {}, r"bad\.csv:1: no header row"),
        ("", {}, r"bad\.csv: empty; it needs a header row"),
        ("t,a\n0,1\n", {"timestamp_column": "time"}, r"no timestamp column 'time'; the header"),
        ("timestamp,a\n0,1\n", {"columns": ["a", "z"]}, r"no column\(s\) z; the header has"),
        (
            "timestamp,a\n1,1\n0.5,2\n",
            {"realtime": True},
            r"bad\.csv:3: timestamp 0\.5 goes back",
        ),
    ],
)
def test_bad_files_fail_on_open_naming_file_and_line(
    tmp_path: Path, text: str, options: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    config = CsvSource.model_validate({"path": path, "window": 1, **options})
    with pytest.raises(SourceError, match=message):
        make_source(config).open()


def test_a_missing_file_and_too_few_rows(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"csv .*gone\.csv: no such file"):
        make_source(CsvSource(path=tmp_path / "gone.csv", window=2)).open()
    assert replay(CsvSource(path=write_csv(tmp_path / "short.csv", 3), window=4)) == []


def test_a_long_file_is_held_as_compact_arrays_not_as_text(tmp_path: Path) -> None:
    """100,000 rows of 3 columns and a timestamp: 1.2 MB of float32 values, 0.8 MB of
    timestamps and 0.8 MB of line numbers; parsing never holds the rows as text (lists
    of strings took 12x that at the peak)."""
    import tracemalloc

    from edge.sources.sensors.csv_replay import CsvTable

    path = write_csv(tmp_path / "long.csv", 100_000)
    tracemalloc.start()
    try:
        table = CsvTable(CsvSource(path=path, window=10))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table.values.shape == (100_000, 3) and table.values.dtype == np.float32
    assert table.values[99_999].tolist() == [99_999, 999_990, -99_999]
    assert table.times is not None and table.times[-1] == pytest.approx(100 + 99_999 * 0.2)
    assert int(table.lines[0]) == 2 and int(table.lines[-1]) == 100_001
    held = table.values.nbytes + table.times.nbytes + table.lines.nbytes
    assert peak < 3 * held, f"parsing peaked at {peak / 2**20:.1f} MB for {held / 2**20:.1f} MB"
