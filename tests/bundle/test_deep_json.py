"""JSON nested deeper than its format needs is refused before it is parsed, with the
error each reader already gives for bad JSON (json recurses once per level: 10,000
brackets raised RecursionError, which none of them caught)."""

from __future__ import annotations

import pytest

from edge.bundle.errors import ManifestError, SignatureError
from edge.bundle.manifest import load_manifest
from edge.bundle.signing import verify
from edge.common.jsontext import TooDeepError, json_depth, loads
from edge.dashboard.payloads import InvalidPayloadError, decode

DEEP = b"[" * 10_000 + b"]" * 10_000


def test_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[["}]}') == 3
    assert json_depth(DEEP) == 10_000
    with pytest.raises(TooDeepError, match="JSON nested 10000 deep, more than the 8 allowed"):
        loads(DEEP, max_depth=8)
    assert loads(b"[[1]]", max_depth=2) == [[1]]


def test_a_deep_manifest_or_signature_is_refused_with_the_bundle_errors() -> None:
    with pytest.raises(ManifestError, match="nested 10000 deep"):
        load_manifest(DEEP, origin="manifest.json")
    with pytest.raises(SignatureError, match="not a JSON signature file: JSON nested 10000"):
        verify(b"{}", DEEP, {})


def test_a_deep_payload_is_invalid_for_the_dashboard() -> None:
    with pytest.raises(InvalidPayloadError, match="nested 10000 deep"):
        decode("telemetry", DEEP)
