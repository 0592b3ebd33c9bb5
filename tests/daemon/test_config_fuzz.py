"""Fuzzing the config loader and the model sidecar parser: whatever the bytes, the answer
is a valid config (or model spec) or one ConfigError, never a traceback.

Three kinds of input for edge.yaml: random bytes, random YAML-ish text, and random
mappings whose keys come from the config's own schema (so values reach every model and
validator). The sidecar gets random mappings of its keys beside a real model. Inputs that
broke something once are kept in tests/fuzz_corpus/config/ and replayed.
"""

from __future__ import annotations

import os
import shutil
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from edge.common.yamltext import load_yaml
from edge.daemon.config import EdgeConfig, parse_config, read_config_data
from edge.daemon.model_spec import SIDECAR_KEYS, ModelSpec, resolve_model
from edge.errors import ConfigError, EdgeError
from tests.models import DigitsModels

CORPUS = Path(__file__).resolve().parent.parent / "fuzz_corpus" / "config"
# EDGE_FUZZ_EXAMPLES=5000 for a longer hunt; the suite keeps each test near 10 s
FUZZ = settings(
    max_examples=int(os.environ.get("EDGE_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def load(data: bytes) -> EdgeConfig:
    """What ``edge run --config`` does with the bytes of a file."""
    return parse_config(load_yaml(data, origin="fuzz.yaml"), origin="fuzz.yaml")


def accepted_or_config_error(data: bytes) -> None:
    try:
        config = load(data)
    except ConfigError as exc:
        event("ConfigError")
        message = str(exc)
        assert message.startswith("fuzz.yaml") and "\n" not in message.strip(), message
    else:
        event("accepted")
        assert isinstance(config, EdgeConfig)
        config.streams()  # what the daemon asks first


# -- values ------------------------------------------------------------------------------

WORDS = (
    "", "0", "/dev/video0", "rtsp://cam/1", "synthetic", "synthetic:noise", "a.mp4", "x.csv",
    "/dev/ttyUSB0", "*.jpg", "current", "log", "jsonl:-", "1x2", "auto", "xnnpack",
    "edgetpu:usb", "gpu", "127.0.0.1:0", "{", "a=b", "\u00e9", "\x00",
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**9, 256, 257, 100_000, 100_001]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(WORDS),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, unions, lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models(arg)
    return found


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_is_list(arg) for arg in typing.get_args(annotation))
    return origin is list


def _near_bounds(field: FieldInfo) -> list[Any]:
    """The field's default and the numbers at and just past its bounds."""
    near: list[Any] = [] if field.default is PydanticUndefined else [field.default]
    for rule in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            bound = getattr(rule, name, None)
            if isinstance(bound, int | float):
                near += [bound, bound + 1, bound - 1, bound * 10]
    return near


def _leaf(field: FieldInfo) -> st.SearchStrategy[Any]:
    near = _near_bounds(field)
    return st.one_of(VALUES, st.sampled_from(near)) if near else VALUES


def schema_mappings(model: type[BaseModel], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings with keys of ``model`` (and now and then a stranger); a nested model's
    value is often a mapping of its keys, a number often its default or near its bounds."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        nested = _models(field.annotation) if depth < 3 else []
        value = _leaf(field)
        if nested:
            inner = st.one_of([schema_mappings(m, depth + 1) for m in nested])
            many = _is_list(field.annotation)
            value = st.one_of(value, st.lists(inner, max_size=3) if many else inner)
        fields[name] = value
    known = st.fixed_dictionaries({}, optional=fields)
    stranger = st.dictionaries(st.text(max_size=10), VALUES, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, known, st.one_of(st.just({}), stranger))


# -- edge.yaml ---------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_are_a_config_or_one_config_error(data: bytes) -> None:
    accepted_or_config_error(data)


YAMLISH = st.lists(
    st.sampled_from(
        [
            "runtime:",
            "  threads: 4",
            "threads: 1e9",
            "source: 0",
            "sources:",
            "  - a.mp4",
            "  - {type: images}",
            "&a [*a]",
            "*a",
            "a: &x 1",
            "b: *x",
            "<<: {a: 1}",
            "? [a]",
            ": x",
            "- - -",
            "{",
            "}",
            "[",
            "]",
            "!!python/object:os.system",
            "!!binary AAAA",
            "drift: {window: 100001}",
            "mqtt: {host: ''}",
            "\t",
            "%YAML 1.1",
            "---",
            "...",
            "key: 'unterminated",
            "k: |",
            "  text",
            "device_id: 2024-01-01",
            "1: 2",
            "null: 1",
            "bundle: ~",
            "\ufeff",
            "é: ü",
        ]
    )
    | st.text(max_size=30),
    max_size=12,
).map("\n".join)


@FUZZ
@given(YAMLISH)
def test_random_yaml_text_is_a_config_or_one_config_error(text: str) -> None:
    accepted_or_config_error(text.encode("utf-8", errors="surrogatepass"))


@FUZZ
@given(schema_mappings(EdgeConfig))
def test_random_settings_are_a_config_or_one_config_error(data: dict[str, Any]) -> None:
    try:
        config = parse_config(data, origin="fuzz")
    except ConfigError as exc:
        event("ConfigError")
        assert str(exc).startswith("fuzz: ") and "\n" not in str(exc), exc  # noqa: PT017
    else:
        event("accepted")
        config.streams()
        yaml.safe_dump(config.model_dump(mode="json"))  # what 'edge info' and reload read


# What each kept input must say (None: a valid config). Crashes before this work are
# marked: a traceback (RecursionError, UnicodeDecodeError) or a second line.
CORPUS_EXPECTED = {
    "billion-laughs.yaml": "the aliases (*name) expand to more than 100000 values",
    "control-char.yaml": "the control character U+0001 at line 1",  # was two lines
    "date-value.yaml": "device_id: Input should be a valid string",
    "deep-nesting.yaml": "nested too deeply",  # was RecursionError
    "drift-window-1e9.yaml": "drift.window: Input should be less than or equal to 100000",
    "duplicate-key-flow.yaml": "the key 'threads' is given twice (lines 1 and 1)",
    "duplicate-key.yaml": "the key 'runtime' is given twice (lines 1 and 4)",  # was accepted
    "inf-interval.yaml": "telemetry_interval_s: Input should be a finite number",
    "int-key.yaml": "1: Keys should be strings",
    "latin1.yaml": "not UTF-8: byte 0xe9 at line 1",  # was UnicodeDecodeError
    "list-key.yaml": "found unhashable key",
    "model-bytes.yaml": "contains NUL bytes",  # was UnicodeDecodeError
    "mqtt-empty-host.yaml": "mqtt.host: String should have at least 1 character",
    "nan-install.yaml": "mqtt.install_max_mb: Input should be a finite number",
    "newline-key.yaml": "'\\n': unknown key",  # was two lines
    "python-tag.yaml": "could not determine a constructor",
    "source-json-string.yaml": "source.images.path: Field required",  # JSON text is read
    "sources-same-name.yaml": "the source name 'a' is given twice",
    "spool-huge.yaml": "spool.max_bytes: Input should be less than or equal to 68719476736",
    "threads-100000.yaml": "runtime.threads: Input should be less than or equal to 256",
    "top-level-list.yaml": "expected a mapping of settings at the top level, got list",
    "unknown-anchor-key.yaml": "defaults: unknown key",
    "utf16.yaml": "the file is UTF-16 text; save it as UTF-8",  # was UnicodeDecodeError
    "utf8-bom.yaml": None,
}


def test_the_corpus_is_all_expected() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(CORPUS_EXPECTED)


@pytest.mark.parametrize(("name", "expected"), sorted(CORPUS_EXPECTED.items()))
def test_the_corpus_of_nasty_configs_replays_as_one_line(name: str, expected: str | None) -> None:
    path = CORPUS / name
    if expected is None:
        assert isinstance(parse_config(read_config_data(path), origin=name), EdgeConfig)
        return
    with pytest.raises(ConfigError) as caught:
        parse_config(read_config_data(path), origin=str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert expected in message


# -- the model sidecar -------------------------------------------------------------------

TASKS = ("classification", "detection", "segmentation", "keypoints", "regression", "anomaly")
SIDECAR_VALUES = st.one_of(
    VALUES,
    st.sampled_from([*TASKS, "labels.txt", "missing.txt", "."]),
    st.fixed_dictionaries(
        {},
        optional={
            "task": st.sampled_from(["classification", "detection", "anomaly"]),
            "decoder": st.sampled_from(["yolo", "ssd_anchors", "nope", "classification"]),
            "top_k": VALUES,
            "threshold": VALUES,
            "color": st.sampled_from(["gray", "rgb", "bgr", "cmyk"]),
            "input_range": VALUES,
            "labels": VALUES,
        },
    ),
)
SIDECARS = st.dictionaries(
    st.sampled_from(sorted(SIDECAR_KEYS)) | st.text(max_size=6), SIDECAR_VALUES, max_size=5
)


@pytest.fixture(scope="module")
def loose_model(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sidecar")
    model = folder / "digits.tflite"
    shutil.copyfile(digits.tflite["fp32"], model)
    (folder / "labels.txt").write_text("\n".join(str(i) for i in range(10)))
    return model


def _spec_or_edge_error(model: Path) -> None:
    try:
        spec = resolve_model(model, root=model.parent)
    except EdgeError as exc:
        event(type(exc).__name__)
        assert "\n" not in str(exc).strip(), exc  # noqa: PT017
    else:
        event("accepted")
        assert isinstance(spec, ModelSpec)
        spec.to_dict()


@FUZZ
@given(sidecar=SIDECARS)
def test_random_sidecars_are_a_spec_or_one_error(
    loose_model: Path, sidecar: dict[str, Any]
) -> None:
    loose_model.with_suffix(".yaml").write_text(yaml.safe_dump(sidecar, allow_unicode=True))
    _spec_or_edge_error(loose_model)


@FUZZ
@given(data=st.binary(max_size=200) | YAMLISH.map(str.encode))
def test_random_sidecar_bytes_are_a_spec_or_one_error(loose_model: Path, data: bytes) -> None:
    loose_model.with_suffix(".yaml").write_bytes(data)
    _spec_or_edge_error(loose_model)
