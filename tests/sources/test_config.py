"""Source configs: CLI shorthands, every model's checks, and the messages users see."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from edge.errors import ConfigError
from edge.sources import (
    CameraSource,
    CsvSource,
    ImagesSource,
    MqttSource,
    RetryPolicy,
    SerialSource,
    Source,
    SourceSetting,
    StreamSource,
    SyntheticSource,
    VideoSource,
    make_source,
    parse_source,
)
from edge.sources.config import SOURCE_TYPES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", CameraSource(device=0)),
        ("2", CameraSource(device=2)),
        ("/dev/video1", CameraSource(device="/dev/video1")),
        ("rtsp://cam.local:554/stream1", StreamSource(url="rtsp://cam.local:554/stream1")),
        ("http://cam.local/mjpg", StreamSource(url="http://cam.local/mjpg")),
        ("clips/door.mp4", VideoSource(path=Path("clips/door.mp4"))),
        ("clips/door.MKV", VideoSource(path=Path("clips/door.MKV"))),
        ("/data/a.avi", VideoSource(path=Path("/data/a.avi"))),
        ("x.mov", VideoSource(path=Path("x.mov"))),
        ("frames", ImagesSource(path="frames")),
        ("frames/", ImagesSource(path="frames/")),
        ("frames/*.png", ImagesSource(path="frames/*.png")),
        ("shots/one.jpg", ImagesSource(path="shots/one.jpg")),
        ("synthetic", SyntheticSource()),
        ("synthetic:noise", SyntheticSource(kind="noise")),
        ("SYNTHETIC:sine", SyntheticSource(kind="sine")),
        (
            '{"type": "video", "path": "a.avi", "loop": true}',
            VideoSource(path=Path("a.avi"), loop=True),
        ),
    ],
)
def test_shorthands_name_the_source_type(text: str, expected: object) -> None:
    assert parse_source(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["empty", "camera index"]),
        ("notes.txt", ["'notes.txt'", "camera index", "synthetic"]),
        ("log.csv", ["CSV", "window", "{type: csv"]),
        ("/dev/ttyUSB0", ["serial", "window", "port: /dev/ttyUSB0"]),
        ("synthetic:digits", ["kind", "'sine' or 'noise'", "'digits'"]),
        ("ftp://host/x", ["url", "rtsp://", "'ftp://host/x'"]),
        ("{not json", ["not valid JSON"]),
    ],
)
def test_bad_shorthands_name_the_value_and_the_choices(text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_source(text)
    for word in words:
        assert word in str(caught.value)


def test_a_settings_field_takes_shorthands_and_mappings() -> None:
    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        source: SourceSetting = CameraSource()

    assert Settings.model_validate({"source": 0}).source == CameraSource(device=0)
    assert Settings.model_validate({"source": "rtsp://h/s"}).source == StreamSource(
        url="rtsp://h/s"
    )
    mapping = {"type": "images", "path": "shots", "loop": True}
    assert Settings.model_validate({"source": mapping}).source == ImagesSource(
        path="shots", loop=True
    )
    with pytest.raises(ConfigError, match=r"cannot tell what 'a\.txt' is"):
        Settings.model_validate({"source": "a.txt"})
    # JSON text, as `edge run --source` takes it, in edge.yaml too
    text = '{"type": "images", "path": "shots", "loop": true}'
    assert Settings.model_validate({"source": text}).source == ImagesSource(path="shots", loop=True)
    with pytest.raises(ValidationError, match="not valid JSON"):
        Settings.model_validate({"source": '{"type": "images",'})


def test_unknown_or_missing_type_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown type 'webcam'; choose one of camera, stream"):
        parse_source({"type": "webcam"})
    with pytest.raises(ConfigError, match="type: missing; choose one of") as caught:
        parse_source({"path": "a.mp4"})
    assert all(kind in str(caught.value) for kind in SOURCE_TYPES)


@pytest.mark.parametrize(
    ("mapping", "field", "detail"),
    [
        ({"type": "camera", "device": -1}, "device", ">= 0"),
        ({"type": "camera", "width": 0}, "width", "greater than or equal to 1"),
        ({"type": "camera", "fps": 0}, "fps", "greater than or equal to 1"),
        ({"type": "camera", "zoom": 2}, "zoom", "unknown key (known: type, device, width"),
        ({"type": "stream", "url": "cam.local/stream"}, "url", "not a stream URL"),
        ({"type": "stream"}, "url", "Field required"),
        ({"type": "video"}, "path", "Field required"),
        ({"type": "video", "path": "a.mp4", "loop": "often"}, "loop", "valid boolean"),
        ({"type": "video", "path": "a.mp4", "decode_threads": -1}, "decode_threads", "equal to 0"),
        (
            {"type": "stream", "url": "rtsp://c", "decode_threads": 65},
            "decode_threads",
            "equal to 64",
        ),
        ({"type": "images", "path": ""}, "path", "at least 1 character"),
        ({"type": "images", "path": "d", "realtime_fps": 0}, "realtime_fps", "greater than 0"),
        ({"type": "serial", "port": "/dev/ttyUSB0"}, "window", "Field required"),
        ({"type": "serial", "port": "p", "window": 0}, "window", "greater than or equal to 1"),
        ({"type": "serial", "port": "p", "window": 4, "stride": 0}, "stride", "equal to 1"),
        ({"type": "serial", "port": "p", "window": 4, "format": "xml"}, "format", "'csv'"),
        ({"type": "serial", "port": "p", "window": 4, "channels": 0}, "channels", "equal to 1"),
        ({"type": "serial", "port": "p", "window": 4, "baud": 0}, "baud", "equal to 1"),
        ({"type": "csv", "path": "a.csv", "window": 4, "speed": 0}, "speed", "greater than 0"),
        ({"type": "csv", "path": "a.csv", "window": 4, "columns": []}, "columns", "at least one"),
        ({"type": "csv", "path": "a", "window": 4, "columns": ["x", "x"]}, "columns", "repeat"),
        (
            {"type": "csv", "path": "a", "window": 4, "columns": ["timestamp"]},
            "columns",
            "is the timestamp_column",
        ),
        (
            {"type": "csv", "path": "a", "window": 4, "timestamp_column": None, "realtime": True},
            "realtime",
            "needs a timestamp_column",
        ),
        ({"type": "mqtt", "topic": "t", "window": 4, "port": 0}, "port", "equal to 1"),
        ({"type": "mqtt", "topic": "t", "window": 4, "port": 65536}, "port", "65535"),
        ({"type": "mqtt", "topic": "t", "window": 4, "qos": 3}, "qos", "less than or equal to 2"),
        ({"type": "mqtt", "topic": "", "window": 4}, "topic", "at least 1 character"),
        ({"type": "mqtt", "topic": "t"}, "window", "Field required"),
        (
            {"type": "mqtt", "topic": "t", "window": 4, "password_file": "/etc/pw"},
            "password_file",
            "needs username",
        ),
        ({"type": "synthetic", "kind": "digits"}, "kind", "'sine' or 'noise'"),
        ({"type": "synthetic", "rate_hz": 0}, "rate_hz", "greater than 0"),
        ({"type": "synthetic", "rate_hz": float("inf")}, "rate_hz", "finite"),
        ({"type": "synthetic", "channels": 0}, "channels", "equal to 1"),
        ({"type": "synthetic", "anomaly_every": 0}, "anomaly_every", "equal to 1"),
    ],
)
def test_validation_errors_name_the_field(
    mapping: dict[str, object], field: str, detail: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_source(mapping, where="edge.yaml: source")
    message = str(caught.value)
    assert message.startswith(f"edge.yaml: source: {field}: ") or f"; {field}: " in message
    assert detail in message


def test_stride_may_exceed_the_window_and_defaults_to_none() -> None:
    config = parse_source({"type": "serial", "port": "/dev/ttyACM0", "window": 4, "stride": 10})
    assert isinstance(config, SerialSource) and config.stride == 10
    assert parse_source({"type": "mqtt", "topic": "t", "window": 4}).stride is None  # type: ignore[union-attr]


def test_models_touch_no_files_and_are_frozen() -> None:
    config = parse_source({"type": "csv", "path": "/nowhere/at/all.csv", "window": 8})
    assert isinstance(config, CsvSource) and config.path == Path("/nowhere/at/all.csv")
    with pytest.raises(ValidationError):
        config.window = 2
    assert parse_source(config) is config


def test_retry_policy_checks_its_values() -> None:
    assert RetryPolicy().initial_s == 0.5
    for bad, field in [
        ({"initial_s": 0}, "initial_s"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_s": 5, "max_s": 1}, "max_s"),
    ]:
        with pytest.raises(ValidationError, match=field):
            RetryPolicy.model_validate(bad)


@pytest.mark.parametrize(
    ("config", "live"),
    [
        (CameraSource(), True),
        (StreamSource(url="rtsp://h/s"), True),
        (VideoSource(path=Path("a.mp4")), False),
        (ImagesSource(path="d"), False),
        (SerialSource(port="/dev/ttyUSB0", window=4), True),
        (CsvSource(path=Path("a.csv"), window=4), False),
        (MqttSource(topic="t", window=4), True),
        (SyntheticSource(), True),
    ],
)
def test_make_source_builds_an_unopened_source_for_every_type(config: object, live: bool) -> None:
    source = make_source(config)  # type: ignore[arg-type]
    assert isinstance(source, Source)
    assert source.live is live
    assert source.description.startswith(f"{config.type}:")  # type: ignore[attr-defined]
    assert source.read() is None  # not opened: nothing to read, nothing raised
