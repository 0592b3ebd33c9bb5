"""`packager build` and friends on the digits model: real conversions, real bundles, real keys."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console

from edge.bundle import open_bundle
from edge.bundle.archive import read_archive, source_date_epoch, write_archive
from edge.bundle.errors import SignatureError
from edge.bundle.manifest import load_manifest, utc_timestamp
from edge.bundle.signing import key_id, load_public_key, write_keypair
from edge.cli.support import make_parser, run
from edge.device.host import PROFILE_IDS
from edge.device.profiles import load_profile
from edge.errors import ConfigError
from edge.runtime import load_model, parse_chain
from edge.runtime.preprocess import PreprocessSpec
from packager.bundle.writer import BuiltBundle, _edge_yaml, _fit_spec, build_bundle
from packager.cli import bundle as bundle_commands
from packager.convert.edgetpu_compiler import find_compiler
from tests.models import DigitsModels

# the signed head first (a device checks it before inflating the rest), then by name
MEMBERS = ["manifest.json", "manifest.sig", "edge.service", "edge.yaml", "labels.txt",
           "model.tflite", "selftest.npz"]  # fmt: skip
EXEC_START = "/opt/edge/venv/bin/edge run --config /etc/edge/edge.yaml"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class Work:
    root: Path
    keras: Path
    calib: Path
    eval: Path
    key: Path
    public: Path
    labels: Path


def cli(*args: str | Path) -> int:
    parser = make_parser(
        "packager",
        "test",
        "bundle commands",
        (
            bundle_commands.add_build,
            bundle_commands.add_keygen,
            bundle_commands.add_sign,
            bundle_commands.add_verify,
            bundle_commands.add_profiles,
        ),
    )
    return run(parser, [str(a) for a in args])


@pytest.fixture(scope="module")
def work(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Work:
    root = tmp_path_factory.mktemp("bundle")
    arrays = digits.arrays()
    np.savez(root / "calib.npz", x=arrays["x_train"][:200])
    np.savez(root / "eval.npz", x=arrays["x_test"], y=arrays["y_test"])
    (root / "labels.txt").write_text("\n".join(NAMES) + "\n")
    private, public = write_keypair(root / "keys", "release")
    return Work(root, digits.keras, root / "calib.npz", root / "eval.npz", private, public,
                root / "labels.txt")  # fmt: skip


def quiet() -> Console:
    return Console(file=io.StringIO(), width=160)


@pytest.fixture(scope="module")
def x86(work: Work) -> BuiltBundle:
    return build_bundle(model=work.keras, profile=load_profile("linux-x86_64"),
                        out_dir=work.root / "dist", calib=work.calib, eval_data=work.eval,
                        key=work.key, console=quiet())  # fmt: skip


@pytest.fixture(scope="module")
def coral(work: Work) -> BuiltBundle:
    return build_bundle(model=work.keras, profile=load_profile("rpi-coral-usb"),
                        out_dir=work.root / "dist", calib=work.calib, eval_data=work.eval,
                        key=work.key, labels=work.labels, name="digits-coral", version="1.2.0",
                        allow_uncompiled=True, console=quiet())  # fmt: skip


def test_listing_is_flat_sorted_and_owned_by_nobody(x86: BuiltBundle) -> None:
    assert x86.path.name == "digits-1-linux-x86_64.tar.gz"
    with tarfile.open(x86.path, "r:gz") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == MEMBERS
    for info in infos:
        assert info.isreg() and info.mode == 0o644 and (info.uid, info.gid) == (0, 0)
        assert info.mtime == x86.manifest.created_epoch


def test_created_comes_from_the_model_or_source_date_epoch(x86: BuiltBundle, work: Work) -> None:
    epoch = source_date_epoch() or int(work.keras.stat().st_mtime)
    assert x86.manifest.created == utc_timestamp(epoch)


def test_manifest_lists_every_member_with_its_hash(x86: BuiltBundle) -> None:
    members = read_archive(x86.path)
    manifest = load_manifest(members["manifest.json"])
    assert manifest == x86.manifest
    assert members["manifest.json"] == manifest.to_json(), "canonical JSON"
    assert set(manifest.files) == set(members) - {"manifest.json", "manifest.sig"}
    for name, digest in manifest.files.items():
        assert hashlib.sha256(members[name]).hexdigest() == digest, name
    assert manifest.model.sha256 == manifest.files["model.tflite"]
    assert manifest.model.size == len(members["model.tflite"])


def test_manifest_describes_the_device_and_the_model(x86: BuiltBundle, work: Work) -> None:
    m = x86.manifest
    assert (m.name, m.version, m.device, m.task) == ("digits", 1, "linux-x86_64", "classification")
    assert (m.runtime.backend, m.runtime.min_version, m.runtime.arch) == (
        "ai-edge-litert", "2.0", "x86_64")  # fmt: skip
    assert (m.model.target, m.model.quantization, m.model.compiled) == ("xnnpack", "int8", False)
    assert m.model.delegation_plan["xnnpack"] > 0
    assert m.inputs[0].dtype == "float32" and list(m.inputs[0].shape[1:]) == [8, 8, 1]
    assert m.outputs[0].shape[-1] == 10
    assert m.preprocessing.color == "gray", "a one-channel input gets a gray spec by default"
    assert m.evaluation is not None and m.evaluation.metric == "accuracy"
    assert m.evaluation.samples == 450 and m.evaluation.quantized is not None
    assert m.evaluation.quantized > 0.9 and m.evaluation.latency_ms is None
    assert m.toolchain.tensorflow.startswith("2.") and m.selftest.samples == 8
    assert x86.summary["latency_p50_ms"] > 0
    assert x86.summary["signed_by"] == key_id(load_public_key(work.public))


def test_coral_bundle_is_uint8_for_the_edgetpu_and_says_it_is_uncompiled(
    coral: BuiltBundle,
) -> None:
    m = coral.manifest
    assert coral.path.name == "digits-coral-1.2.0-rpi-coral-usb.tar.gz"
    assert (m.model.target, m.runtime.backend, m.runtime.min_version) == (
        "edgetpu", "tflite-runtime", "2.14")  # fmt: skip
    assert m.inputs[0].dtype == "uint8" and m.inputs[0].shape[0] == 1
    assert m.model.delegation_plan == {"edgetpu": 9, "cpu": 0}
    members = read_archive(coral.path)
    assert members["labels.txt"].decode().split() == NAMES
    if find_compiler() is None:
        assert m.model.file == "model.tflite" and not m.model.compiled
        assert any(note.startswith("uncompiled") for note in m.notes)


def test_signature_verifies_with_the_public_key(x86: BuiltBundle, work: Work) -> None:
    bundle = open_bundle(x86.path, keys_dir=work.public.parent)
    assert bundle.key_id == key_id(load_public_key(work.public))
    with pytest.raises(SignatureError, match=r"not among the trusted keys"):
        open_bundle(x86.path, keys_dir=work.root / "nowhere")


@pytest.mark.parametrize("which", ["x86", "coral"])
def test_selftest_reproduces_through_the_device_runtime(
    which: str, request: pytest.FixtureRequest
) -> None:
    built: BuiltBundle = request.getfixturevalue(which)
    members = read_archive(built.path)
    with np.load(io.BytesIO(members["selftest.npz"])) as npz:
        x, y = npz["x"], npz["y"]
    assert x.shape == (8, 8, 8, 1) and y.shape == (8, 10) and y.dtype == np.float32
    profile = load_profile(built.manifest.device)
    for chain in (profile.delegates, ("builtin",)):  # the device's chain (here: CPU), and none
        runner = load_model(members[built.manifest.model.file], delegates=chain)
        got = np.concatenate([runner.run(x[i : i + 1])[0] for i in range(len(x))])
        assert np.max(np.abs(got - y)) <= built.manifest.selftest.tolerance


def test_edge_yaml_and_the_unit(x86: BuiltBundle) -> None:
    members = read_archive(x86.path)
    text = members["edge.yaml"].decode()
    assert text.startswith("# edge.yaml for digits 1 on linux-x86_64; see docs/config.md\n")
    profile = load_profile("linux-x86_64")
    config = yaml.safe_load(text)
    camera = {"type": "camera", "device": "/dev/video0", "width": 640, "height": 480, "fps": 30}
    runtime = {"delegates": ["xnnpack", "builtin"], "parallelism": "auto"}
    assert config == {"bundle": "current", "source": camera, "runtime": runtime}
    assert parse_chain(config["runtime"]["delegates"]) == profile.chain
    unit = members["edge.service"].decode().splitlines()
    for line in ("Type=simple", f"ExecStart={EXEC_START}", "ExecReload=/bin/kill -HUP $MAINPID",
                 "Restart=on-failure", "RestartSec=5", "User=edge", "StateDirectory=edge",
                 "WorkingDirectory=/var/lib/edge", "Environment=PYTHONUNBUFFERED=1",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "UMask=0027",
                 "DevicePolicy=closed", "DeviceAllow=char-video4linux rw"):  # fmt: skip
        assert line in unit
    assert members["labels.txt"] == b"0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n"


def test_building_again_gives_identical_bytes(
    x86: BuiltBundle, work: Work, capsys: pytest.CaptureFixture[str]
) -> None:
    out = work.root / "dist-again"
    code = cli("build", work.keras, "--device", "linux-x86_64", "--calib", work.calib,
               "--eval", work.eval, "--key", work.key, "-o", out)  # fmt: skip
    assert code == 0
    again = out / x86.path.name
    assert again.read_bytes() == x86.path.read_bytes()
    printed = capsys.readouterr().out
    assert f"wrote {again}" in printed and "linux-x86_64" in printed and "int8" in printed


def test_sign_replaces_only_the_signature_reproducibly(
    x86: BuiltBundle, work: Work, capsys: pytest.CaptureFixture[str]
) -> None:
    other, other_pub = write_keypair(work.root / "other-keys", "ops")
    first, second = work.root / "resigned-1.tar.gz", work.root / "resigned-2.tar.gz"
    assert cli("sign", x86.path, "--key", other, "-o", first) == 0
    assert cli("sign", x86.path, "--key", other, "-o", second) == 0
    assert first.read_bytes() == second.read_bytes()
    before, after = read_archive(x86.path), read_archive(first)
    assert before.keys() == after.keys() and before["manifest.sig"] != after["manifest.sig"]
    assert all(before[n] == after[n] for n in before if n != "manifest.sig")
    assert open_bundle(first, keys_dir=other_pub.parent).key_id == key_id(
        load_public_key(other_pub)
    )
    capsys.readouterr()
    assert cli("verify", first, "--key", work.public) == 2
    assert "not among the trusted keys" in capsys.readouterr().err


def test_verify_prints_the_manifest_and_refuses_a_tampered_bundle(
    x86: BuiltBundle, work: Work, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("verify", x86.path, "--trusted-keys", work.public.parent) == 0
    printed = capsys.readouterr().out
    assert "OK, signed by" in printed and "model.tflite: int8 for xnnpack" in printed
    members = read_archive(x86.path)
    members["labels.txt"] = b"cat\n" * 10
    tampered = write_archive(work.root / "tampered.tar.gz", members)
    assert cli("verify", tampered, "--key", work.public) == 2
    err = capsys.readouterr().err
    assert err.count("packager: error:") == 1 and "member labels.txt: sha256" in err


def test_a_key_is_required_unless_unsigned(work: Work, tmp_path: Path) -> None:
    profile = load_profile("rpi4")
    with pytest.raises(ConfigError, match=r"packager keygen"):
        build_bundle(model=work.keras, profile=profile, out_dir=tmp_path, console=quiet())
    with pytest.raises(ConfigError, match=r"--key and --unsigned exclude each other"):
        build_bundle(model=work.keras, profile=profile, out_dir=tmp_path, key=work.key,
                     unsigned=True, console=quiet())  # fmt: skip
    with pytest.raises(ConfigError, match=r"--version: version must be a positive integer"):
        build_bundle(model=work.keras, profile=profile, out_dir=tmp_path, key=work.key,
                     version="v2", console=quiet())  # fmt: skip
    with pytest.raises(ConfigError, match=r"--labels .*: no such file"):
        build_bundle(model=work.keras, profile=profile, out_dir=tmp_path, key=work.key,
                     labels=tmp_path / "labels.txt", console=quiet())  # fmt: skip
    assert not list(tmp_path.iterdir()), "nothing written before the arguments are right"


def test_keygen_and_profiles_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("keygen", "--out", tmp_path, "--name", "fleet") == 0
    assert (tmp_path / "fleet.key").exists() and (tmp_path / "fleet.pub").exists()
    assert cli("keygen", "--out", tmp_path, "--name", "fleet") == 2
    assert "already exists" in capsys.readouterr().err
    assert cli("profiles") == 0
    printed = capsys.readouterr().out
    for profile_id in PROFILE_IDS:
        assert profile_id in printed
    shutil.rmtree(tmp_path)


def test_a_preprocessing_spec_must_give_the_models_channels(digits: DigitsModels) -> None:
    runner = load_model(digits.tflite["int8"])
    assert _fit_spec(None, runner) == PreprocessSpec(color="gray")
    assert _fit_spec(PreprocessSpec(color="gray", size=(8, 8)), runner).size == (8, 8)
    with pytest.raises(ConfigError, match=r"color 'rgb' gives 3 channel\(s\), the model input"):
        _fit_spec(PreprocessSpec(color="rgb"), runner)


@pytest.mark.parametrize("profile_id", sorted(PROFILE_IDS))
def test_the_default_edge_yaml_is_a_valid_daemon_config(profile_id: str) -> None:
    config = pytest.importorskip("edge.daemon.config")
    profile = load_profile(profile_id)
    parsed = config.parse_config(yaml.safe_load(_edge_yaml(profile, "x", 1)), origin="edge.yaml")
    assert parsed.bundle == "current" and parsed.runtime.threads is None, "one per core here"
    assert parsed.source.type == "camera" and parsed.source.device == profile.camera.device
    assert parse_chain(parsed.runtime.delegates) == profile.chain
