"""Device profiles: every shipped profile validates, and a broken one names its file and key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.device.host import PROFILE_IDS
from edge.device.profiles import (
    SYSTEM_DIR,
    TARGET_IO,
    TARGET_MODES,
    list_profiles,
    load_profile,
    profile_dirs,
)
from edge.errors import ConfigError
from edge.runtime import parse_chain

DEVICES = Path(__file__).resolve().parents[2] / "devices"
PROFILE_FILES = sorted(DEVICES.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _only_repo_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_PROFILES", raising=False)


def _rpi4() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEVICES / "rpi4.yaml").read_text())
    return data


def _write(folder: Path, data: dict[str, Any], name: str = "rpi4") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_profile_ids_are_the_ones_edge_host_matches() -> None:
    assert [p.stem for p in PROFILE_FILES] == sorted(PROFILE_IDS)
    assert [p.id for p in list_profiles()] == sorted(PROFILE_IDS)


@pytest.mark.parametrize("path", PROFILE_FILES, ids=[p.stem for p in PROFILE_FILES])
def test_every_profile_validates(path: Path) -> None:
    profile = load_profile(path)
    assert profile.id == path.stem
    assert profile.default_quant in TARGET_MODES[profile.target]
    assert parse_chain(profile.delegates) == profile.chain
    assert profile.notes, "a profile tells its user what to know"
    assert profile.sources, "a profile says where its facts come from"
    assert profile.runtime.requirement().startswith(profile.runtime.package)
    if profile.runtime.package == "tflite-runtime":
        assert {"numpy<2", "opencv-python-headless<=4.11"} <= set(profile.runtime.pip_constraints)


def test_profiles_load_by_id_and_by_path_alike() -> None:
    assert load_profile("rpi-coral-usb") == load_profile(DEVICES / "rpi-coral-usb.yaml")
    coral = load_profile("rpi-coral-usb")
    assert coral.target == "edgetpu" and coral.io_dtype == "uint8"
    assert coral.chain[0].type == "edgetpu" and coral.chain[0].device == "usb"
    assert load_profile("jetson-orin-nano").chain[0].type == "gpu"


def test_jetson_nano_says_plainly_that_its_python_is_too_old() -> None:
    nano = load_profile("jetson-nano")
    assert "3.6" in nano.runtime.python
    assert any("Python >= 3.10" in note and "Not supported" in note for note in nano.notes)


def test_target_tables_mirror_the_packager() -> None:
    from packager.convert.targets import TARGETS

    assert {name: rules.modes for name, rules in TARGETS.items()} == TARGET_MODES
    assert {name: rules.io_allowed for name, rules in TARGETS.items()} == TARGET_IO


def test_unknown_id_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown device profile 'rpi9'") as caught:
        load_profile("rpi9")
    for profile_id in PROFILE_IDS:
        assert profile_id in str(caught.value)


def test_edge_profiles_folders_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    _write(mine, {**_rpi4(), "name": "my lab's Pi 4"})
    _write(other, {**_rpi4(), "id": "lab-box", "name": "lab box"}, name="lab-box")
    monkeypatch.setenv("EDGE_PROFILES", os.pathsep.join([str(mine), str(other)]))
    assert profile_dirs() == [mine, other, DEVICES, SYSTEM_DIR]
    assert load_profile("rpi4").name == "my lab's Pi 4"
    assert load_profile("lab-box").name == "lab box"
    assert "lab-box" in [p.id for p in list_profiles()]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colour": "red"}, r"rpi4\.yaml: colour: unknown key \(known: id, name"),
        ({"cpu_cores": "four"}, r"rpi4\.yaml: cpu_cores: Input should be a valid integer"),
        ({"cpu_cores": "4"}, r"rpi4\.yaml: cpu_cores: Input should be a valid integer"),
        ({"arch": "arm64"}, r"rpi4\.yaml: arch: Input should be 'aarch64'"),
        ({"delegates": ["tpu", "builtin"]}, r"rpi4\.yaml: delegates\.0: unknown delegate 'tpu'"),
        (
            {"delegates": ["xnnpack", {"type": "edgetpu", "device": "serial"}]},
            r"rpi4\.yaml: delegates\.1: .*device",
        ),
        ({"delegates": ["builtin", "edgetpu"]}, r"rpi4\.yaml: delegates: .*must come last"),
        (
            {
                "target": "edgetpu",
                "delegates": ["edgetpu:usb", "builtin"],
                "io_dtype": "uint8",
                "default_quant": "fp16",
            },
            r"rpi4\.yaml: default_quant: target 'edgetpu' cannot run fp16",
        ),
        ({"target": "edgetpu"}, r"rpi4\.yaml: delegates: target 'edgetpu' runs on the edgetpu"),
        ({"default_quant": "fp16", "io_dtype": "uint8"}, r"rpi4\.yaml: io_dtype: fp16 models"),
        ({"target": "tpu"}, r"rpi4\.yaml: target: Input should be 'xnnpack'"),
        ({"id": "rpi5"}, r"rpi4\.yaml: id: 'rpi5' does not match the file name"),
        ({"sources": {"cores": "guess"}}, r"rpi4\.yaml: sources: no such field 'cores'"),
    ],
)
def test_a_broken_profile_names_file_and_key(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    path = _write(tmp_path, {**_rpi4(), **change})
    with pytest.raises(ConfigError, match=expected):
        load_profile(path)


def test_nested_sections_name_the_key(tmp_path: Path) -> None:
    data = _rpi4()
    data["runtime"] = {**data["runtime"], "wheel": "x"}
    data["camera"] = {**data["camera"], "fps": "fast"}
    with pytest.raises(ConfigError) as caught:
        load_profile(_write(tmp_path, data))
    message = str(caught.value)
    assert "runtime.wheel: unknown key (known: package, versions, python, pip_constraints)" in (
        message
    )
    assert "camera.fps: Input should be a valid integer, got 'fast'" in message


def test_tflite_runtime_needs_its_numpy_pins(tmp_path: Path) -> None:
    data = _rpi4()
    data["runtime"] = {**data["runtime"], "package": "tflite-runtime", "versions": ">=2.14"}
    with pytest.raises(ConfigError, match=r"runtime: .*pin numpy and opencv-python-headless"):
        load_profile(_write(tmp_path, data))


@pytest.mark.parametrize("versions", ["2.0", ">=two", "<3"])
def test_runtime_versions_must_be_a_specifier_with_a_lower_bound(
    tmp_path: Path, versions: str
) -> None:
    data = _rpi4()
    data["runtime"] = {**data["runtime"], "versions": versions}
    with pytest.raises(ConfigError, match=r"rpi4\.yaml: runtime\.versions: "):
        load_profile(_write(tmp_path, data))


def test_min_version_is_the_lower_bound() -> None:
    assert load_profile("rpi-coral-usb").runtime.min_version() == "2.14"
    assert load_profile("rpi4").runtime.min_version() == "2.0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("id: [unclosed", "not valid YAML"), ("- a list", "expected a mapping")],
)
def test_not_a_profile_at_all(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "rpi4.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"rpi4\.yaml: {expected}"):
        load_profile(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such profile file"):
        load_profile(tmp_path / "gone.yaml")
