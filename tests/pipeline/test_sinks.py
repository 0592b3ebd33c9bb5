"""JSON lines and log sinks, and building sinks from config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from edge.postprocess import Detection, Result
from edge.sinks import JsonLinesSink, LogSink, Sink, SinkConfig, SinkError, make_sink, summarize


def result(seq: int, **fields: object) -> Result:
    base: dict[str, object] = {"top": (("7", 0.98),), "latency_ms": 1.25}
    base.update(fields)
    return Result(seq, 1700000000.0 + seq, "video:x.avi", "classification", **base)  # type: ignore[arg-type]


def test_jsonl_writes_one_valid_object_per_line_into_a_new_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "results.jsonl"
    sink = JsonLinesSink(path, flush_every=3)
    assert isinstance(sink, Sink) and sink.name == f"jsonl:{path}"
    for seq in range(4):
        sink.handle(result(seq))
    assert len(path.read_text().splitlines()) == 3  # one write of three lines so far
    sink.close()
    sink.close()  # idempotent
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["frame_seq"] for line in lines] == [0, 1, 2, 3]
    assert lines[0]["top"] == [{"label": "7", "score": 0.98}] and lines[0]["latency_ms"] == 1.25
    with pytest.raises(SinkError, match="closed"):
        sink.handle(result(5))


def test_jsonl_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    for seq in range(2):
        sink = JsonLinesSink(path)
        sink.handle(result(seq))
        assert len(path.read_text().splitlines()) == seq + 1  # flush_every=1: written at once
        sink.close()


def test_jsonl_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = JsonLinesSink("-")
    detection = Detection("cat", 0, 0.9, (1.0, 2.0, 3.0, 4.0))
    sink.handle(result(1, top=(), detections=(detection,)))
    line = capsys.readouterr().out
    assert line.endswith("\n") and json.loads(line)["detections"][0]["box"] == [1, 2, 3, 4]
    sink.close()


def test_jsonl_that_cannot_open_says_where(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SinkError, match="cannot open"):
        JsonLinesSink(tmp_path / "file" / "results.jsonl")


def test_log_sink_logs_every_nth_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge.sinks")
    sink = LogSink("info", every=2)
    for seq in range(5):
        sink.handle(result(seq))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"frame {s} video:x.avi -> 7 (0.98) in 1.2 ms" for s in (0, 2, 4)]
    with pytest.raises(SinkError, match="not one of"):
        LogSink("loud")


def test_summaries_of_each_kind() -> None:
    boxes = tuple(Detection(f"o{i}", i, 0.5, (0, 0, 1, 1)) for i in range(5))
    assert summarize(result(1, top=(), detections=boxes)).startswith(
        "frame 1 video:x.avi -> 5 objects: o0 (0.50), o1 (0.50), o2 (0.50) +2"
    )
    assert summarize(result(2, top=(), value=0.25, anomaly=True, latency_ms=None)) == (
        "frame 2 video:x.avi -> 0.25 ANOMALY"
    )
    assert "nothing above threshold" in summarize(result(3, top=()))


def test_sinks_from_config(tmp_path: Path) -> None:
    adapter: TypeAdapter[SinkConfig] = TypeAdapter(SinkConfig)
    jsonl = make_sink(adapter.validate_python({"type": "jsonl", "path": str(tmp_path / "r.jsonl")}))
    assert isinstance(jsonl, JsonLinesSink) and jsonl.flush_every == 1
    jsonl.close()
    log_sink = make_sink(adapter.validate_python({"type": "log", "every": 10}))
    assert isinstance(log_sink, LogSink) and log_sink.every == 10
    for bad, message in [
        ({"type": "mqtt"}, "does not match any of the expected tags"),
        ({"type": "jsonl"}, "path"),
        ({"type": "log", "every": 0}, "every"),
        ({"type": "log", "colour": True}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=message):
            adapter.validate_python(bad)
