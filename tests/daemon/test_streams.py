"""Several streams in one daemon, motion gating and tracked events: real videos written
by OpenCV from scikit-image's photographs, a real TFLite detector, a real mosquitto."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from edge.daemon.streams import (
    CHANNEL_AHEAD,
    MAX_READ_AHEAD,
    READ_AHEAD,
    READ_AHEAD_BYTES,
    StreamSet,
)
from edge.errors import ConfigError
from tests.broker import Broker
from tests.mqtt.support import Subscriber
from tests.scenes import green_detector, object_box, write_scene

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
A_MOVING = [(20, 50), (100, 130)]  # frames [start, end) where the cat crosses stream a
B_MOVING = [(40, 70)]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scenes")
    return {
        "detector": green_detector(),
        "a": write_scene(folder / "a.avi", frames=160, moving=A_MOVING),
        "b": write_scene(folder / "b.avi", frames=90, moving=B_MOVING, photo="coffee"),
        "short": write_scene(folder / "short.avi", frames=30, moving=[(5, 25)]),
    }


# -- config -------------------------------------------------------------------------------
def test_sources_take_names_shorthands_and_defaults() -> None:
    config = parse_config(
        {
            "sources": [
                "clips/front.mp4",
                "door=rtsp://cam.local/live",
                {"source": "/dev/video2", "motion": {"enabled": True, "threshold": 40}},
                {"name": "yard", "source": {"type": "video", "path": "y.avi"}},
            ],
            "motion": {"enabled": True, "keepalive_s": 30},
        }
    )
    streams = config.streams()
    assert [s.name for s in streams] == ["front", "door", "video2", "yard"]
    assert streams[1].source.type == "stream" and streams[2].motion is not None
    assert streams[2].motion.threshold == 40 and config.motion.keepalive_s == 30
    # the single source: stays valid, one stream named after it
    (only,) = parse_config({"source": "clips/porch.avi"}).streams()
    assert only.name == "porch" and only.source.type == "video"


@pytest.mark.parametrize(
    ("data", "wanted"),
    [
        ({"sources": ["a/cam.mp4", "b/cam.mp4"]}, "the source name 'cam' is given twice"),
        ({"sources": ["x=a.mp4", {"name": "x", "source": "b.mp4"}]}, "'x' is given twice"),
        ({"source": "a.mp4", "sources": ["b.mp4"]}, "source and sources are both given"),
        ({"motion": {"threshold": 300}}, "motion.threshold: Input should be less than or equal"),
        ({"motion": {"min_area": 0}}, "motion.min_area: Input should be greater than 0"),
        ({"sources": [{"source": "a.mp4", "motion": {"blur": 4}}]}, "sources.0.motion.blur"),
        ({"motion": {"keepalive_s": -1}}, "motion.keepalive_s"),
        ({"motion": {"colour": 1}}, "motion.colour: unknown key"),
        (
            {"sources": [{"source": "synthetic", "motion": {"enabled": True}}]},
            "motion gating needs images",
        ),
        ({"tracking": {"low_score": 0.6, "high_score": 0.5}}, "low_score (0.6) is above"),
    ],
)
def test_bad_sources_and_motion_settings_are_named(data: dict[str, Any], wanted: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, origin="edge.yaml")
    assert wanted in str(caught.value) and str(caught.value).startswith("edge.yaml: ")


def test_a_name_given_twice_on_the_command_line_exits_2(scenes: dict[str, Path]) -> None:
    done = _edge("run", str(scenes["detector"]), "--source", "x=a.avi", "--source", "x=b.avi")
    assert done.returncode == 2
    assert "the source name 'x' is given twice" in done.stderr
    assert "--source NAME=SRC" in done.stderr


def test_a_tracker_for_a_classification_model_is_refused(demo: dict[str, Path]) -> None:
    config = parse_config(
        {"bundle": str(demo["fp32"]), "source": str(demo["video"]), "tracking": {"enabled": True}}
    )
    with pytest.raises(ConfigError, match=r"tracking.enabled: the model \(digits-fp32\) is a "):
        Daemon(config).start()


# -- frames held -------------------------------------------------------------------------
def test_a_file_is_read_ahead_a_few_frames_and_a_set_queue_size_wins(
    scenes: dict[str, Path], tmp_path: Path
) -> None:
    csv = tmp_path / "sensor.csv"
    csv.write_text("timestamp,value\n0.0,1.0\n")
    sources = [
        str(scenes["a"]),  # a file: read READ_AHEAD ahead
        {"name": "own", "source": str(scenes["b"]), "queue_size": 5},  # its own size wins
        "door=rtsp://cam.local/live",  # live: keeps the pipeline's queue, drops the oldest
        {"name": "log", "source": {"type": "csv", "path": str(csv), "window": 4}},  # sensor
    ]
    queues = {
        s.name: (s.queue.maxsize, s.policy)
        for s in StreamSet.build(parse_config({"sources": sources})).streams
    }
    assert queues == {
        "a": (READ_AHEAD, "block"),
        "own": (5, "block"),
        "door": (8, "drop_oldest"),
        "log": (8, "block"),
    }
    # pipeline.queue_size set in the config is every stream's queue, files' too
    sized = parse_config({"sources": sources[:1], "pipeline": {"queue_size": 8}})
    assert [s.queue.maxsize for s in StreamSet.build(sized).streams] == [8]
    assert StreamSet.build(parse_config({"sources": sources[:2]})).reads_ahead is False
    assert StreamSet.build(parse_config({"sources": sources[:1]})).reads_ahead is True


def test_how_far_a_file_is_read_ahead_follows_its_frames_bytes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import cv2

    def video(name: str, width: int, height: int) -> Path:
        path = tmp_path / f"{name}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (width, height))
        for i in range(6):
            writer.write(np.full((height, width, 3), i * 40, np.uint8))
        writer.release()
        return path

    small, vga = video("small", 160, 120), video("vga", 640, 480)
    streams = StreamSet.build(parse_config({"sources": [f"small={small}", f"vga={vga}"]}))
    assert {s.name: s.queue.maxsize for s in streams.streams} == {"small": 4, "vga": 4}
    with caplog.at_level(logging.INFO, logger="edge.daemon.streams"):
        streams.open()
        try:
            while streams.read(5.0) is not None:
                pass
        finally:
            streams.close()
    said = [r.getMessage() for r in caplog.records if "ahead" in r.getMessage()]
    assert sorted(said) == [  # a guess the daemon makes is logged
        f"stream small: reading {MAX_READ_AHEAD} frame(s) ahead (57600 bytes a frame; set "
        "queue_size to choose)",
        f"stream vga: reading {READ_AHEAD} frame(s) ahead (921600 bytes a frame; set "
        "queue_size to choose)",
    ]
    # 160x120 frames (57.6 KB): as many as fit the budget, up to the cap; VGA (0.92 MB): 4
    assert READ_AHEAD_BYTES // (160 * 120 * 3) > MAX_READ_AHEAD
    assert {s.name: s.queue.maxsize for s in streams.streams} == {
        "small": MAX_READ_AHEAD,
        "vga": READ_AHEAD,
    }


@pytest.mark.parametrize(
    ("model", "pipeline", "channel"),
    [
        ("detector", {}, CHANNEL_AHEAD),  # an image model's lanes take one frame at a time
        ("detector", {"queue_size": 8}, 8),  # set: used as given
        ("digits", {}, 8),  # a tiny model's lanes take chunks of the channel: it keeps them
    ],
)
def test_the_channel_behind_a_file_is_short_for_an_image_model_unless_queue_size_is_set(
    demo: dict[str, Path],
    scenes: dict[str, Path],
    model: str,
    pipeline: dict[str, Any],
    channel: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bundle, video = (
        (scenes["detector"], scenes["short"])
        if model == "detector"
        else (demo["int8"], demo["video"])
    )
    config = parse_config({"bundle": str(bundle), "source": str(video), "pipeline": pipeline})
    with caplog.at_level(logging.INFO, logger="edge.pipeline.pipeline"):
        assert Daemon(config, limits=RunLimits(report_every_s=60)).run() == 0
    (started,) = [r.getMessage() for r in caplog.records if "pipeline started" in r.getMessage()]
    assert started.endswith(f"queue {channel}")


# -- several streams ----------------------------------------------------------------------
def test_two_streams_from_the_command_line(scenes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    done = _edge(
        "run",
        str(scenes["detector"]),
        "--source",
        str(scenes["a"]),
        "--source",
        f"front={scenes['b']}",
        "--sink",
        f"jsonl:{out}",
        "--threads",
        "1",
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_stream.setdefault(result["meta"]["stream"], []).append(result)
    assert {k: len(v) for k, v in by_stream.items()} == {"a": 160, "front": 90}
    # the detector finds the cat where the test put it, in each stream's own frames
    hit = next(r for r in by_stream["front"] if r["frame_seq"] == 55)
    expected = object_box(55, *B_MOVING[0])
    assert hit["detections"][0]["label"] == "cat"
    assert max(abs(a - b) for a, b in zip(hit["detections"][0]["box"], expected, strict=True)) <= 4


def test_a_stream_that_dies_mid_run_leaves_the_others_going(
    scenes: dict[str, Path], tmp_path: Path
) -> None:
    doomed = tmp_path / "doomed.avi"
    doomed.write_bytes(scenes["short"].read_bytes())  # 30 frames, 1 s at real time, looped
    config = parse_config(
        {
            "bundle": str(scenes["detector"]),
            "sources": [
                {
                    "name": "doomed",
                    "source": {
                        "type": "video",
                        "path": str(doomed),
                        "loop": True,
                        "realtime": True,
                    },
                },
                {
                    "name": "b",
                    "source": {"type": "video", "path": str(scenes["b"]), "realtime": True},
                },
            ],
            "runtime": {"threads": 1},
            "sinks": [],
        }
    )
    daemon = Daemon(config, limits=RunLimits(duration_s=20, report_every_s=0.5))
    seen = []

    def kill_then_look() -> None:
        _wait(lambda: daemon.stream_stats().get("doomed", {}).get("read", 0) >= 5)
        doomed.unlink()  # gone when the loop opens it again, after its 30 frames
        _wait(lambda: daemon.stream_stats()["doomed"]["state"] == "failed")
        seen.append(daemon.health())  # b still going

    threading.Thread(target=kill_then_look).start()
    assert daemon.run() == 0
    (health,) = seen
    assert health.status == "degraded", health
    assert any(r.startswith("stream doomed failed: video ") for r in health.reasons), health
    stats = daemon.stream_stats()
    assert stats["doomed"]["state"] == "failed"
    assert "no such file" in stats["doomed"]["last_error"]
    assert 30 <= stats["doomed"]["read"] < 60
    assert stats["b"]["state"] == "ended" and stats["b"]["last_error"] is None
    assert stats["b"]["read"] == stats["b"]["inferred"] == 90  # nothing of b was lost


# -- motion gating, tracked events, results on request --------------------------------------
def test_motion_gated_streams_publish_tracked_objects(
    scenes: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    subscriber = Subscriber(broker.port, ["edge/cams/#", "homeassistant/#"])
    config = parse_config(
        {
            "device_id": "cams",
            "bundle": str(scenes["detector"]),
            # b at its real rate (3 s), so telemetry sees it being read whatever the load
            "sources": [
                f"a={scenes['a']}",
                {
                    "name": "b",
                    "source": {"type": "video", "path": str(scenes["b"]), "realtime": True},
                },
            ],
            "motion": {"enabled": True, "keepalive_s": 60, "hold_s": 0.5},
            "runtime": {"threads": 1},
            "sinks": [],
            "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.port, "results": True},
            "spool": {"path": str(tmp_path / "spool.sqlite")},
            "telemetry_interval_s": 0.3,
        }
    )
    daemon = Daemon(config, limits=RunLimits(report_every_s=0.5))
    try:
        assert daemon.run() == 0
        assert daemon.mqtt is not None
        published = daemon.mqtt.sink.results_published
        stopped = subscriber.wait(
            lambda: (
                [m.payload for m in subscriber.on("edge/cams/status")][-1:] == [b"stopped"]
                and len(subscriber.on("edge/cams/results")) >= published
            )
        )
        assert stopped
    finally:
        subscriber.close()
    stats = daemon.stream_stats()
    for name, frames, moving in (("a", 160, A_MOVING), ("b", 90, B_MOVING)):
        st = stats[name]
        assert st["read"] == frames and st["read"] == st["inferred"] + st["skipped"]
        moving_frames = sum(end - start for start, end in moving)
        # the moving frames, the fading trace of the object (~6 frames), hold_s (15 frames)
        # after each interval, and the first frame
        assert moving_frames <= st["inferred"] <= moving_frames + len(moving) * 25 + 1
    events = [json.loads(m.payload) for m in subscriber.on("edge/cams/events")]
    assert all(e["schema"] == "edge.event/1" for e in events)
    for name, moving in (("a", A_MOVING), ("b", B_MOVING)):
        mine = [e for e in events if e["stream"] == name]
        news = [e for e in mine if e["type"] == "new"]
        ends = [e for e in mine if e["type"] == "end"]
        assert len(news) == len(moving) == len(ends), [(e["type"], e["frame_id"]) for e in mine]
        for new, end, (start, stop) in zip(news, ends, moving, strict=True):
            assert start <= new["frame_id"] <= start + 3  # confirmed on its second frame
            assert new["object"]["label"] == "cat" and new["labels"] == ["cat"]
            assert end["object"]["id"] == new["object"]["id"] and end["object"]["ended"]
            assert end["object"]["frames"] >= (stop - start) - 2
            assert end["object"]["best_score"] == pytest.approx(0.9, abs=1e-3)
            assert end["object"]["duration_s"] > 0
    # every inferred frame on results (QoS 0), none of the skipped ones; those made before
    # the connection was up are lost, and counted
    results = [json.loads(m.payload) for m in subscriber.on("edge/cams/results")]
    assert daemon.mqtt is not None
    sink = daemon.mqtt.sink
    assert (
        sink.results_published + sink.results_lost
        == stats["a"]["inferred"] + stats["b"]["inferred"]
    )
    assert len(results) == sink.results_published > 0
    # per-stream stats in telemetry and /metrics
    telemetry = [json.loads(m.payload) for m in subscriber.on("edge/cams/telemetry")]
    assert all(set(t["streams"]) == {"a", "b"} for t in telemetry)
    assert any(t["streams"]["b"]["camera_fps"] > 0 for t in telemetry)
    assert telemetry[-1]["streams"]["b"]["skipped"] > 0
    from edge.http.metrics import DaemonCollector

    metrics = {
        (m.name, tuple(sorted(sample.labels.items()))): sample.value
        for m in DaemonCollector(daemon, daemon.health).collect()
        for sample in m.samples
    }
    assert metrics[("edge_stream_frames", (("counter", "read"), ("stream", "a")))] == 160
    assert metrics[("edge_stream_state", (("state", "ended"), ("stream", "b")))] == 1
    # Home Assistant: one device, four entities per stream, each stream's state on change
    configs = {m.topic: json.loads(m.payload) for m in subscriber.messages
               if m.topic.startswith("homeassistant/")}  # fmt: skip
    objects = configs["homeassistant/sensor/cams/a_objects/config"]
    assert objects["state_topic"] == "edge/cams/streams/a/state"
    assert objects["value_template"] == "{{ value_json.count }}"
    assert objects["device"]["identifiers"] == ["edge_cams"]
    fps = configs["homeassistant/sensor/cams/b_fps/config"]
    assert fps["state_topic"] == "edge/cams/telemetry"
    assert fps["value_template"] == "{{ value_json.streams['b'].process_fps }}"
    assert {c["device"]["identifiers"][0] for c in configs.values()} == {"edge_cams"}
    for name, moving in (("a", A_MOVING), ("b", B_MOVING)):
        states = [json.loads(m.payload) for m in subscriber.on(f"edge/cams/streams/{name}/state")]
        counts = [s["count"] for s in states]  # changes only (and again on connect)
        changes = [c for i, c in enumerate(counts) if i == 0 or c != counts[i - 1]]
        assert changes[changes[0] == 0 :] == [1, 0] * len(moving), counts
        seen = next(s for s in states if s["count"] == 1)
        assert seen["objects"] == {"cat": 1} and seen["label"] == "cat"
    assert {r["stream"] for r in results} == {"a", "b"} and results[0]["type"] == "frame"


def _edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_motion_regions_give_the_detector_a_crop_and_boxes_in_the_frame(
    scenes: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    config = parse_config(
        {
            "bundle": str(scenes["detector"]),
            "source": str(scenes["b"]),
            "motion": {"enabled": True, "region": True, "region_min_px": 240, "keepalive_s": 60},
            "runtime": {"threads": 1},
            "sinks": [{"type": "jsonl", "path": str(out)}],
        }
    )
    assert Daemon(config).run() == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    cropped = [r for r in results if r["meta"].get("region")]
    assert len(cropped) >= 20  # the moving frames were inferred on a crop
    start, end = B_MOVING[0]
    for result in cropped:
        seq = result["frame_seq"]
        width, height = result["meta"]["region"][2:]
        assert width == height >= 240 and width < 480  # a square crop, not the frame
        if start + 1 <= seq < end and result["detections"]:
            box = result["detections"][0]["box"]  # mapped back into the 640x480 frame
            expected = object_box(seq, start, end)
            assert max(abs(a - b) for a, b in zip(box, expected, strict=True)) <= 6, seq
    found = [r for r in cropped if start + 1 <= r["frame_seq"] < end and r["detections"]]
    assert len(found) >= (end - start) - 3


def test_frames_of_different_streams_are_batched_together(
    demo: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    config = parse_config(
        {
            "bundle": str(demo["int8"]),
            "sources": [f"left={demo['video']}", f"right={demo['video']}"],
            "pipeline": {"batch_size": 4, "batch_wait_ms": 50},
            "runtime": {"threads": 1},
            "sinks": [{"type": "jsonl", "path": str(out)}],
        }
    )
    daemon = Daemon(config)
    assert daemon.run() == 0
    counters = daemon.measurements()["counters"]
    assert counters["processed"] == 240 and counters["batches"] < 240
    results = [json.loads(line) for line in out.read_text().splitlines()]
    labels = np.load(demo["labels"])
    for name in ("left", "right"):  # each stream's results, in its order, right as alone
        mine = [r for r in results if r["meta"]["stream"] == name]
        assert [r["frame_seq"] for r in mine] == list(range(120))
        right = sum(
            int(r["top"][0]["label"] == DIGITS[int(y)]) for r, y in zip(mine, labels, strict=True)
        )
        assert right >= 108, right  # the int8 model's test accuracy, about 0.95
