"""The drift reference in a bundle: made by the packager from the calibration data through
the bundled model, reproducible, signed with the rest, and optional in the manifest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from edge.bundle import open_bundle
from edge.bundle.archive import read_archive
from edge.bundle.manifest import MANIFEST, canonical_json, load_manifest
from edge.device.profiles import load_profile
from edge.install import install_bundle
from edge.monitor.reference import ReferenceStats
from edge.postprocess.config import PostprocessConfig
from edge.runtime import load_model
from packager.bundle.writer import build_bundle
from packager.evaluate.reference import (
    class_distribution,
    compute_reference,
    numeric_distribution,
    quantile_edges,
)
from tests.install.bundles import Kit, digits_kit
from tests.models import DigitsModels


@pytest.fixture(scope="module")
def kit(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return digits_kit(digits, tmp_path_factory)


def test_the_manifest_holds_the_calibration_datas_reference(kit: Kit) -> None:
    members = read_archive(kit.bundle)
    raw = json.loads(members[MANIFEST])
    manifest = load_manifest(members[MANIFEST])
    reference = manifest.monitoring
    assert reference is not None and raw["monitoring"]["samples"] == 200
    assert set(reference.statistics) == {"input_mean[0]", "input_std[0]", "confidence",
                                         "classes"}  # fmt: skip
    for name in ("input_mean[0]", "input_std[0]"):
        distribution = reference.statistics[name]
        assert len(distribution.edges) == 4, "five equal-mass bins"
        assert all(abs(f - 0.2) <= 0.02 for f in distribution.fractions)
    classes = reference.statistics["classes"]
    assert classes.classes == tuple(range(10)) and classes.fractions[-1] == 0.0
    assert len(members[MANIFEST]) < 4096, "bins, not data"
    # the same statistics again from the same samples through the bundled model
    runner = load_model(members[manifest.model.file], delegates=("xnnpack", "builtin"),
                        threads=1)  # fmt: skip
    with np.load(kit.folder / "calib.npz") as npz:
        x = npz["x"]
    again = compute_reference(runner, x, postprocess=PostprocessConfig(task="classification"))
    assert again == reference


def test_building_again_gives_the_same_bytes_and_it_verifies_and_installs(
    kit: Kit, digits: DigitsModels, tmp_path: Path
) -> None:
    again = build_bundle(model=digits.keras, profile=load_profile("linux-x86_64"),
                         out_dir=tmp_path / "dist", calib=kit.folder / "calib.npz", key=kit.key,
                         console=Console(file=io.StringIO()))  # fmt: skip
    assert again.manifest.monitoring is not None
    assert again.path.read_bytes() == kit.bundle.read_bytes()
    assert open_bundle(again.path, keys_dir=kit.keys_dir).manifest.monitoring is not None
    result = install_bundle(again.path, root=tmp_path / "state", trusted_keys=kit.keys_dir)
    installed = load_manifest((result.slot.path / MANIFEST).read_bytes())
    assert installed.monitoring == again.manifest.monitoring


def test_a_manifest_without_monitoring_keeps_its_bytes(kit: Kit) -> None:
    """Manifests from before the field: no 'monitoring' key in, none out."""
    raw = json.loads(read_archive(kit.bundle)[MANIFEST])
    del raw["monitoring"]
    before = canonical_json(raw)
    manifest = load_manifest(before)
    assert manifest.monitoring is None and manifest.to_json() == before


def test_no_data_no_reference(
    digits: DigitsModels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    built = build_bundle(model=digits.keras, profile=load_profile("linux-x86_64"),
                         out_dir=tmp_path, quant="fp32", unsigned=True,
                         console=Console(file=io.StringIO()))  # fmt: skip
    assert built.manifest.monitoring is None
    assert b'"monitoring"' not in read_archive(built.path)[MANIFEST]
    assert "no reference statistics for drift monitoring: pass --calib" in caplog.text


def test_bins_keep_ties_together_and_survive_rounding() -> None:
    # an int8 model's confidence: mostly its largest value, 255/256
    values = np.array([0.99609375] * 84 + [0.9921875] * 10 + [0.5] * 6)
    assert quantile_edges(values) == (0.994141,)  # half-way, below the tie
    assert numeric_distribution(values).fractions == (0.16, 0.84)
    assert quantile_edges(np.full(10, 0.25)) == (0.25,), "a constant: one edge at it"
    spread = np.arange(100, dtype=np.float64)
    assert quantile_edges(spread) == (19.5, 39.5, 59.5, 79.5)
    many = np.repeat(np.arange(30), np.arange(30) + 1)  # class c seen c + 1 times
    distribution = class_distribution(many.astype(np.float64), 30)
    assert distribution.classes == tuple(range(10, 30)), "the 20 most frequent classes"
    assert distribution.fractions[-1] == pytest.approx(55 / many.size, abs=1e-6)
    ReferenceStats.model_validate(
        {"samples": 1, "channel_axis": "none", "statistics": {"classes": distribution}}
    )
