"""verify_bundle: trust, integrity, the device rule and the runtime; refusals name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.bundle.errors import IncompatibleBundleError, IntegrityError, SignatureError
from edge.bundle.signing import key_id, load_private_key
from edge.cli.install import add_verify
from edge.cli.support import make_parser, run
from edge.device.host import HostFacts, read_host_facts
from edge.install import verify_bundle
from tests.install.bundles import Kit, signature_offset, tamper, variant

RPI5_CPU = (
    "processor\t: {i}\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n"
)


@pytest.fixture(scope="module")
def rpi5() -> HostFacts:
    """The facts of a Raspberry Pi 5, read from a fake /proc and device tree."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "proc/device-tree").mkdir(parents=True)
        (root / "proc/cpuinfo").write_text("\n".join(RPI5_CPU.format(i=i) for i in range(4)))
        (root / "proc/device-tree/model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
        facts = read_host_facts(root)
    assert (facts.cpu.arch, facts.profile_id) == ("aarch64", "rpi5")
    return facts


def edge(*args: str | Path) -> int:
    return run(
        make_parser("edge", "test", "install commands", (add_verify,)), [str(a) for a in args]
    )


def test_a_signed_bundle_for_this_machine_verifies(kit: Kit) -> None:
    verified = verify_bundle(kit.bundle, trusted_keys=kit.keys_dir)
    assert verified.key_id == key_id(load_private_key(kit.key).public_key())
    assert verified.manifest.device == "linux-x86_64" and verified.backend == "ai-edge-litert"
    assert "linux-x86_64 runs on any x86_64 device" in verified.device_note
    assert verified.slot == f"digits-1-{verified.sha256[:12]}"
    assert set(verified.digests) >= {"manifest.json", "manifest.sig", "model.tflite"}


@pytest.mark.parametrize(
    ("member", "offset", "error", "message"),
    [
        ("model.tflite", 200, IntegrityError, r"member model\.tflite: sha256 .* differs"),
        ("manifest.json", 30, SignatureError, r"does not match manifest\.json"),
        ("manifest.sig", -1, SignatureError, r"manifest\.sig: the signature by key .* does not"),
    ],
)
def test_one_flipped_byte_is_refused_naming_what_failed(
    kit: Kit, tmp_path: Path, member: str, offset: int, error: type[Exception], message: str
) -> None:
    if offset < 0:  # a byte of the signature itself that stays base64 when flipped
        offset = signature_offset(kit.bundle)
    bad = tamper(kit.bundle, tmp_path / "bad.tar.gz", member, offset)
    with pytest.raises(error, match=message):
        verify_bundle(bad, trusted_keys=kit.keys_dir)


def test_an_untrusted_key_and_an_unsigned_bundle_are_refused(kit: Kit, tmp_path: Path) -> None:
    stranger = variant(kit, tmp_path / "stranger.tar.gz", key=kit.other_key)
    with pytest.raises(SignatureError, match=r"not among the trusted keys in .*trusted"):
        verify_bundle(stranger, trusted_keys=kit.keys_dir)
    unsigned = variant(kit, tmp_path / "unsigned.tar.gz", unsigned=True)
    with pytest.raises(SignatureError, match=r"no manifest\.sig: the bundle is unsigned"):
        verify_bundle(unsigned, trusted_keys=kit.keys_dir)
    assert verify_bundle(unsigned, trusted_keys=kit.keys_dir, allow_unsigned=True).key_id is None


def test_another_arch_is_refused_unless_any_device(kit: Kit, tmp_path: Path) -> None:
    arm = variant(
        kit, tmp_path / "arm.tar.gz", fields={"device": "rpi4", "runtime.arch": "aarch64"}
    )
    with pytest.raises(
        IncompatibleBundleError,
        match=r"runtime\.arch: the bundle is built for "
        r"aarch64 \(profile rpi4\), this device is x86_64",
    ):
        verify_bundle(arm, trusted_keys=kit.keys_dir)
    verified = verify_bundle(arm, trusted_keys=kit.keys_dir, check_device=False)
    assert "skipped" in verified.device_note


def test_board_profiles_must_match_the_board_generic_ones_fit_any(
    kit: Kit, tmp_path: Path, rpi5: HostFacts
) -> None:
    def for_device(device: str) -> Path:
        return variant(
            kit, tmp_path / f"{device}.tar.gz", fields={"device": device, "runtime.arch": "aarch64"}
        )

    with pytest.raises(
        IncompatibleBundleError,
        match=r"device: the bundle is for profile rpi4, "
        r"this device is detected as rpi5 \(Raspberry Pi 5",
    ):
        verify_bundle(for_device("rpi4"), trusted_keys=kit.keys_dir, host=rpi5)
    same = verify_bundle(for_device("rpi5"), trusted_keys=kit.keys_dir, host=rpi5)
    assert same.device_note == "profile rpi5 matches this device"
    generic = verify_bundle(for_device("linux-aarch64"), trusted_keys=kit.keys_dir, host=rpi5)
    assert generic.device_note == "linux-aarch64 runs on any aarch64 device (this one is rpi5)"
    with pytest.raises(
        IncompatibleBundleError,
        match=r"runtime\.arch: the bundle is built for "
        r"x86_64",
    ):
        verify_bundle(kit.bundle, trusted_keys=kit.keys_dir, host=rpi5)


def test_the_runtime_must_be_there_and_new_enough(kit: Kit, tmp_path: Path) -> None:
    future = variant(kit, tmp_path / "future.tar.gz", fields={"runtime.min_version": "99.0"})
    with pytest.raises(
        IncompatibleBundleError,
        match=r"runtime\.min_version: the bundle needs "
        r"ai-edge-litert >= 99\.0, this device has 2\.",
    ):
        verify_bundle(future, trusted_keys=kit.keys_dir)
    old = variant(
        kit,
        tmp_path / "tflite.tar.gz",
        fields={"runtime.backend": "tflite-runtime", "runtime.min_version": "2.14"},
    )
    assert verify_bundle(old, trusted_keys=kit.keys_dir).backend == "ai-edge-litert", (
        "ai-edge-litert stands in for tflite-runtime"
    )


def test_edge_verify_prints_one_line(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert edge("verify", kit.bundle, "--trusted-keys", kit.keys_dir) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{kit.bundle}: OK: digits 1 (sha ") and "signed by" in out
    assert len(out.splitlines()) == 1
    bad = tamper(kit.bundle, tmp_path / "bad.tar.gz", "labels.txt", 0)
    assert edge("verify", bad, "--trusted-keys", kit.keys_dir) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge: error: ") and "member labels.txt: sha256" in err
    assert len(err.splitlines()) == 1
