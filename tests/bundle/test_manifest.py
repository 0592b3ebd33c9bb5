"""manifest.json: round trip, canonical bytes, errors that name the field, version order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bundle.errors import IntegrityError, ManifestError
from edge.bundle.manifest import (
    Manifest,
    canonical_json,
    check_files,
    load_manifest,
    parse_version,
    sha256_hex,
    utc_timestamp,
    version_key,
)

MEMBERS = {
    "model.tflite": b"TFL3 model bytes",
    "labels.txt": b"cat\ndog\n",
    "selftest.npz": b"npz",
    "edge.yaml": b"bundle: current\n",
}


def manifest_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "pets",
        "version": 3,
        "created": utc_timestamp(1_700_000_000),
        "device": "rpi4",
        "runtime": {"backend": "ai-edge-litert", "min_version": "2.0", "arch": "aarch64"},
        "model": {
            "file": "model.tflite",
            "sha256": sha256_hex(MEMBERS["model.tflite"]),
            "size": len(MEMBERS["model.tflite"]),
            "quantization": "int8",
            "target": "xnnpack",
            "delegation_plan": {"xnnpack": 7, "builtin": 2},
        },
        "inputs": [{"name": "image", "shape": [-1, 8, 8, 1], "dtype": "float32"}],
        "outputs": [{"name": "probs", "shape": [-1, 2], "dtype": "uint8", "scale": 0.00390625}],
        "task": "classification",
        "preprocessing": {"size": [8, 8], "color": "gray"},
        "postprocessing": {"labels_file": "labels.txt", "top_k": 1},
        "evaluation": {"metric": "accuracy", "reference": 0.98, "quantized": 0.975,
                       "drop": 0.5, "latency_ms": None, "samples": 400},
        "toolchain": {"packager": "0.1.0", "tensorflow": "2.21.0", "converter": "tflite"},
        "selftest": {"file": "selftest.npz", "tolerance": 0.02, "samples": 8},
        "notes": ["hello"],
        "files": {name: sha256_hex(data) for name, data in MEMBERS.items()},
    }  # fmt: skip
    data.update(changes)
    return data


def test_round_trip_gives_the_same_manifest_and_bytes() -> None:
    manifest = Manifest.model_validate(manifest_data())
    raw = manifest.to_json()
    again = load_manifest(raw)
    assert again == manifest
    assert again.to_json() == raw
    assert raw.endswith(b"\n") and b": " not in raw and b", " not in raw
    assert list(json.loads(raw)) == sorted(json.loads(raw))
    assert manifest.created_epoch == 1_700_000_000
    assert manifest.bundle_name() == "pets-3-rpi4.tar.gz"


def test_canonical_json_is_stable_and_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", 1.5]}) == '{"a":["é",1.5],"b":1}\n'.encode()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "../evil"}, "name: String should match pattern"),
        ({"version": 0}, "version: an integer version must be >= 1"),
        ({"version": "1.2"}, "not a positive integer or a semver"),
        ({"created": "yesterday"}, "created: String should match pattern"),
        ({"task": "dancing"}, "task: Input should be 'classification'"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"files": {"../x": "0" * 64}}, "files: '../x' cannot be a listed member"),
        ({"selftest": {"tolerance": 0.0, "samples": 8}}, "selftest.tolerance"),
    ],
)
def test_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    raw = json.dumps(manifest_data(**changes)).encode()
    with pytest.raises(ManifestError, match=r"bundle.tar.gz:manifest.json: ") as caught:
        load_manifest(raw, origin="bundle.tar.gz:manifest.json")
    assert field in str(caught.value)


def test_model_sha256_must_be_listed_in_files() -> None:
    data = manifest_data()
    data["model"] = {**data["model"], "sha256": "0" * 64}
    with pytest.raises(ManifestError, match=r"model.file 'model.tflite' must be in files"):
        load_manifest(json.dumps(data).encode())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"schema_version": 1, "schema_version": 1}', "duplicate key 'schema_version'"),
        (b'{"schema_version": 2}', "schema_version: this edge reads schema 1"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_unreadable_manifests(raw: bytes, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected):
        load_manifest(raw)


def test_check_files_names_the_member() -> None:
    manifest = Manifest.model_validate(manifest_data())
    check_files(manifest, MEMBERS, origin="b.tar.gz")
    with pytest.raises(IntegrityError, match=r"b.tar.gz: member labels.txt: sha256 .* differs"):
        check_files(manifest, {**MEMBERS, "labels.txt": b"cat\ndog\nfox\n"}, origin="b.tar.gz")
    missing = {k: v for k, v in MEMBERS.items() if k != "edge.yaml"}
    with pytest.raises(IntegrityError, match=r"member edge.yaml is listed .* but missing"):
        check_files(manifest, missing, origin="b.tar.gz")
    with pytest.raises(IntegrityError, match=r"member extra.bin is not listed"):
        check_files(manifest, {**MEMBERS, "extra.bin": b"?"}, origin="b.tar.gz")


SEMVER_ORDER = [  # semver.org section 11's example, then more
    "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
    "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0",
]  # fmt: skip


def test_semver_orders_by_its_parts() -> None:
    shuffled = sorted(SEMVER_ORDER, key=lambda v: v[::-1])
    assert sorted(shuffled, key=version_key) == SEMVER_ORDER
    assert version_key("1.0.0+build.7") == version_key("1.0.0")


@given(st.integers(1, 10**9), st.integers(1, 10**9))
def test_integers_order_as_integers(a: int, b: int) -> None:
    assert (version_key(a) < version_key(b)) == (a < b)
    assert (version_key(a) == version_key(f"{a}.0.0")) is True


def test_manifest_versions_compare() -> None:
    old = Manifest.model_validate(manifest_data(version=9))
    new = Manifest.model_validate(manifest_data(version=10))
    semver = Manifest.model_validate(manifest_data(version="10.0.1"))
    assert old.version_key() < new.version_key() < semver.version_key()


@pytest.mark.parametrize(
    ("text", "value"), [("3", 3), ("1.2.0", "1.2.0"), ("2.0.0-rc.1", "2.0.0-rc.1")]
)
def test_parse_version(text: str, value: int | str) -> None:
    assert parse_version(text) == value


@pytest.mark.parametrize("text", ["0", "1.2", "v1.2.0", "-1", ""])
def test_parse_version_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"positive integer"):
        parse_version(text)
