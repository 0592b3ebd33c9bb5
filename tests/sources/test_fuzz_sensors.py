"""Fuzzing the sensor payload parsers: whatever the bytes, the answer is finite float32
samples or one MalformedInputError with a known reason, never another exception.

Random bytes, random JSON structures (nested at random, numbers at the edges of float32
and beyond), sample-shaped JSON with bad values, random CSV lines; the serial source
reading random bytes from a real pty; the CSV replay opening random files (SourceError
only). Inputs that broke something once are kept in tests/fuzz_corpus/sensors/ and
replayed through every parser.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge.sources import CsvSource, SerialSource, SourceError, SourceTimeoutError, make_source
from edge.sources.sensors.csv_replay import CsvTable
from edge.sources.sensors.parsing import (
    MAX_PAYLOAD_BYTES,
    REASONS,
    MalformedInputError,
    parse_csv_line,
    parse_json_line,
    parse_json_samples,
)
from edge.sources.sensors.windowing import ChannelLock, Windower

CORPUS = Path(__file__).resolve().parent.parent / "fuzz_corpus" / "sensors"
# EDGE_FUZZ_EXAMPLES=5000 for a longer hunt; the suite keeps each test to seconds
FUZZ = settings(
    max_examples=int(os.environ.get("EDGE_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
EDGE_NUMBERS = st.sampled_from(
    [0, -0.0, 1, -1, 3.4028234e38, 3.5e38, -3.5e38, 1e308, 2**63, 10**400, 5e-324]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | EDGE_NUMBERS
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.sampled_from(["values", "v", ""]) | st.text(max_size=5), children)
    ),
    max_leaves=40,
)
SAMPLE_ROWS = st.lists(
    st.lists(st.floats(width=32) | EDGE_NUMBERS | st.booleans(), min_size=0, max_size=5),
    min_size=0,
    max_size=5,
)


def samples_or_malformed(parse: Any, data: Any, note: Any = event) -> None:
    try:
        samples = parse(data)
    except MalformedInputError as exc:
        reason, message = exc.reason, str(exc)
        note(f"rejected: {reason}")
        assert reason in REASONS and message
        return
    note("accepted")
    array = np.asarray(samples, np.float32)
    assert array.size and np.isfinite(array).all()
    if parse is parse_json_samples:
        assert array.ndim == 2


def dumped(value: Any) -> str:
    return json.dumps(value)  # NaN and Infinity as JavaScript writes them, which JSON parsers see


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    samples_or_malformed(parse_json_samples, data)
    text = data.decode("utf-8", "replace")
    samples_or_malformed(parse_json_line, text)
    samples_or_malformed(parse_csv_line, text)


@FUZZ
@given(JSON_VALUES)
def test_random_json_structures(value: Any) -> None:
    text = dumped(value)
    samples_or_malformed(parse_json_samples, text.encode())
    samples_or_malformed(parse_json_line, text)


@FUZZ
@given(SAMPLE_ROWS, st.booleans())
def test_sample_shaped_json_with_bad_values(rows: list[list[Any]], flat: bool) -> None:
    value: Any = rows[0] if flat and rows else rows
    samples_or_malformed(parse_json_samples, dumped(value).encode())
    samples_or_malformed(parse_json_line, dumped({"values": value}))


@FUZZ
@given(st.integers(1, 20_000), st.sampled_from(["[", '{"a":', '[{"v":']), st.binary(max_size=8))
def test_deep_nesting_never_recurses(depth: int, opener: str, middle: bytes) -> None:
    closer = {"[": "]", '{"a":': "}", '[{"v":': "}]"}[opener]
    data = opener.encode() * depth + middle + closer.encode() * depth
    samples_or_malformed(parse_json_samples, data)


@FUZZ
@given(st.lists(st.text("0123456789.eE+-naifINFx_ ", max_size=12), min_size=1, max_size=6))
def test_random_csv_lines(fields: list[str]) -> None:
    samples_or_malformed(parse_csv_line, ",".join(fields))


@FUZZ
@given(st.lists(SAMPLE_ROWS, max_size=12), st.integers(1, 4))
def test_windows_of_accepted_samples_have_one_channel_count(
    messages: list[list[list[Any]]], window: int
) -> None:
    """What the MQTT source does with each payload: parse, agree on channels, window."""
    rejected: list[int] = []
    lock = ChannelLock(None, lambda count, token: rejected.append(count))
    windower = Windower(window)
    windows = []
    for rows in messages:
        try:
            samples = parse_json_samples(dumped(rows).encode())
        except MalformedInputError:
            continue
        for block, _ in lock.take(samples, None):
            windows += windower.push(block)
    assert all(w.shape == (window, lock.channels) for w in windows)
    assert all(count != lock.channels for count in rejected) or lock.channels is None


def test_payloads_over_the_bound_are_refused_before_parsing() -> None:
    payload = b"[" + b"1," * MAX_PAYLOAD_BYTES + b"1]"
    with pytest.raises(MalformedInputError, match="bytes, more than the 65536 allowed") as caught:
        parse_json_samples(payload)
    assert caught.value.reason == "too_large"
    assert parse_json_samples(b"[1, 2]", max_bytes=6).tolist() == [[1, 2]]


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.name)
def test_the_corpus_replays_without_a_crash(path: Path) -> None:
    data = path.read_bytes()
    samples_or_malformed(parse_json_samples, data, print)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # the serial source counts such a line as not_text before parsing
    samples_or_malformed(parse_json_line, text, print)
    samples_or_malformed(parse_csv_line, text, print)


@pytest.fixture(scope="module")
def pty_pair() -> Any:
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


@settings(FUZZ, max_examples=min(FUZZ.max_examples, 100))
@given(st.binary(max_size=200))
def test_the_serial_source_reads_on_after_random_bytes(
    pty_pair: tuple[int, str], noise: bytes
) -> None:
    master, path = pty_pair
    source = make_source(SerialSource(port=path, window=1, channels=1, format="json"))
    source.open()
    try:
        os.write(master, b"cut line\n" + noise.replace(b"\x04", b"") + b"\n[7.5]\n")
        seen: list[float] = []
        while not seen or seen[-1] != 7.5:
            frame = source.read(timeout=2)
            assert frame is not None
            seen.append(float(frame.data[0, 0]))
        assert all(np.isfinite(seen))
    except SourceTimeoutError:
        pytest.fail(f"the good line after {noise!r} never came out")
    finally:
        source.close()


@FUZZ
@given(st.binary(max_size=400) | st.text(',\n0123456789.-ae"\x00 ', max_size=200).map(str.encode))
def test_the_csv_replay_opens_or_says_why(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("csv", numbered=True) / "fuzz.csv"
    path.write_bytes(b"timestamp,value\n" + data)
    try:
        table = CsvTable(CsvSource(path=path, window=1))
    except SourceError as exc:
        message = str(exc)
        event("SourceError")
        assert message.startswith(f"csv {path}") and "\n" not in message
        return
    event("opened")
    assert np.isfinite(table.values).all()
