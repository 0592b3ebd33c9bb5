"""install_bundle and rollback on a real root: slots, the current link, history, self-test."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from edge.bundle.errors import IncompatibleBundleError, IntegrityError, SignatureError
from edge.cli.install import add_install, add_installed, add_rollback
from edge.cli.support import make_parser, run
from edge.daemon.model_spec import resolve_model
from edge.install import (
    InstallError,
    SelftestError,
    current_slot,
    install_bundle,
    list_installed,
    rollback,
)
from edge.install.slots import read_history
from tests.install.bundles import Kit, selftest_with, signature_offset, snapshot, tamper, variant


def edge(*args: str | Path) -> int:
    parser = make_parser("edge", "test", "install", (add_install, add_installed, add_rollback))
    return run(parser, [str(a) for a in args])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "state"


def versions(kit: Kit, folder: Path, *numbers: int) -> list[Path]:
    return [variant(kit, folder / f"digits-{n}.tar.gz", fields={"version": n}) for n in numbers]


def current(root: Path) -> str:
    return os.readlink(root / "current")


def test_install_extracts_a_slot_and_points_current_at_it(kit: Kit, root: Path) -> None:
    result = install_bundle(kit.bundle, root=root, trusted_keys=kit.keys_dir)
    slot = result.slot
    assert slot.path == root / "bundles" / f"digits-1-{result.sha256[:12]}"
    assert current(root) == f"bundles/{slot.name}", "a relative link, switched atomically"
    assert sorted(p.name for p in slot.path.iterdir()) == sorted(
        [
            "edge.service",
            "edge.yaml",
            "labels.txt",
            "manifest.json",
            "manifest.sig",
            "model.tflite",
            "selftest.npz",
        ]
    )
    assert oct(slot.path.stat().st_mode & 0o777) == "0o755"
    assert result.selftest is not None and result.selftest.ok
    assert (result.selftest.samples, result.selftest.passed) == (8, 8)
    line = result.describe()
    assert line.startswith(f"installed digits 1 (sha {result.sha256[:12]}, signed by ")
    assert f"into {slot.path}; self-test 8/8 within " in line
    assert line.endswith(f"current -> {slot.name}")
    history = json.loads((root / "history.json").read_text())
    assert [(e["action"], e["slot"], e["previous"]) for e in history["events"]] == [
        ("install", slot.name, None)
    ]
    assert sorted(os.listdir(root / "bundles")) == [slot.name], "no temporary folder left"
    spec = resolve_model("current", root=root)  # what the daemon runs
    assert spec.name == "digits" and spec.model_path.parent == slot.path


def test_same_or_older_versions_are_refused_unless_forced(
    kit: Kit, root: Path, tmp_path: Path
) -> None:
    v2, v3 = versions(kit, tmp_path, 2, 3)
    install_bundle(v3, root=root, trusted_keys=kit.keys_dir)
    before = snapshot(root)
    for bundle, words in ((v3, "the same as"), (v2, "older than")):
        with pytest.raises(
            IncompatibleBundleError,
            match=rf"version: digits \d is {words} the "
            r"installed digits 3 \(slot digits-3-\w+\); pass --force",
        ):
            install_bundle(bundle, root=root, trusted_keys=kit.keys_dir)
    assert snapshot(root) == before
    forced = install_bundle(v2, root=root, trusted_keys=kit.keys_dir, force=True)
    assert current(root) == f"bundles/{forced.slot.name}" and forced.previous is not None
    again = install_bundle(v2, root=root, trusted_keys=kit.keys_dir, force=True)
    assert again.reused and again.slot.path == forced.slot.path


def test_rollback_goes_back_one_install_at_a_time(kit: Kit, root: Path, tmp_path: Path) -> None:
    slots = [
        install_bundle(b, root=root, trusted_keys=kit.keys_dir).slot.name
        for b in [kit.bundle, *versions(kit, tmp_path, 2, 3)]
    ]
    assert rollback(root).name == slots[1] and current(root) == f"bundles/{slots[1]}"
    assert rollback(root).name == slots[0] and current(root) == f"bundles/{slots[0]}"
    with pytest.raises(InstallError, match=r"nothing older .*: digits-1-\w+ is the oldest"):
        rollback(root)
    assert [s.name for s in list_installed(root)] == slots, "slots are kept, oldest first"
    assert [s.current for s in list_installed(root)] == [True, False, False]
    with pytest.raises(InstallError, match=r"nothing is installed here"):
        rollback(tmp_path / "empty")


def test_a_second_rollback_with_two_installed_says_what_is_true(
    kit: Kit, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = (
        install_bundle(b, root=root, trusted_keys=kit.keys_dir).slot.name
        for b in [kit.bundle, *versions(kit, tmp_path, 2)]
    )
    assert edge("rollback", "--root", root) == 0
    assert capsys.readouterr().out.startswith("rolled back to digits 1 (")
    before = snapshot(root)
    assert edge("rollback", "--root", root) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"nothing older to roll back to: {first} is the oldest install" in line
    assert f"also installed: {second}; " in line and "`edge install` its bundle again" in line
    assert "only bundle" not in line
    assert snapshot(root) == before, "current and history.json untouched"
    shutil.rmtree(root / "bundles" / second)  # now it is the only one
    with pytest.raises(InstallError, match=f"{first} is the only bundle installed"):
        rollback(root)


@pytest.mark.parametrize("member", ["model.tflite", "manifest.json", "manifest.sig"])
def test_a_tampered_bundle_leaves_the_installed_slot_untouched(
    kit: Kit, root: Path, tmp_path: Path, member: str
) -> None:
    install_bundle(kit.bundle, root=root, trusted_keys=kit.keys_dir)
    before = snapshot(root)
    v2 = versions(kit, tmp_path, 2)[0]
    offset = signature_offset(v2) if member == "manifest.sig" else 100
    bad = tamper(v2, tmp_path / "bad.tar.gz", member, offset)
    error = IntegrityError if member == "model.tflite" else SignatureError
    with pytest.raises(error, match=member.replace(".", r"\.")):
        install_bundle(bad, root=root, trusted_keys=kit.keys_dir)
    assert snapshot(root) == before


def test_a_failed_selftest_rolls_back_and_leaves_nothing(
    kit: Kit, root: Path, tmp_path: Path
) -> None:
    first = install_bundle(kit.bundle, root=root, trusted_keys=kit.keys_dir).slot.name
    before = snapshot(root)
    broken = variant(
        kit,
        tmp_path / "broken.tar.gz",
        fields={"version": 2},
        members={"selftest.npz": selftest_with(kit, shift=0.5, sample=3)},
    )
    with pytest.raises(SelftestError) as caught:
        install_bundle(broken, root=root, trusted_keys=kit.keys_dir)
    message = str(caught.value)
    assert "digits 2: self-test failed: output 0 differs by 0.5 > " in message
    assert re.search(r"on sample 3 \(7/8 passed on \w+\); rolled back", message)
    assert message.endswith(f"; rolled back to {first}")
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k != "history.json"} == {
        k: v for k, v in before.items() if k != "history.json"
    }, "current and slots as before"
    events = json.loads((root / "history.json").read_text())["events"]
    assert [e["action"] for e in events] == ["install", "selftest-failed"]
    with pytest.raises(InstallError, match="nothing to roll back to"):
        rollback(root)
    unchecked = install_bundle(broken, root=root, trusted_keys=kit.keys_dir, selftest=False)
    assert unchecked.selftest is None and "self-test skipped" in unchecked.describe()


def test_a_failed_first_install_removes_current(kit: Kit, root: Path, tmp_path: Path) -> None:
    broken = variant(
        kit,
        tmp_path / "broken.tar.gz",
        members={"selftest.npz": selftest_with(kit, shift=-3.0, sample=0)},
    )
    with pytest.raises(SelftestError, match=r"on sample 0 .*; nothing is current$"):
        install_bundle(broken, root=root, trusted_keys=kit.keys_dir)
    assert not (root / "current").exists() and not (root / "current").is_symlink()
    assert os.listdir(root / "bundles") == []


def test_a_damaged_current_slot_does_not_block_a_new_install(
    kit: Kit, root: Path, tmp_path: Path
) -> None:
    first = install_bundle(kit.bundle, root=root, trusted_keys=kit.keys_dir).slot
    shutil.rmtree(first.path)  # e.g. a disk error; current now dangles
    with pytest.raises(InstallError, match=rf"slot {first.name} is missing or damaged"):
        current_slot(root)
    result = install_bundle(kit.bundle, root=root, trusted_keys=kit.keys_dir)
    assert result.slot.name == first.name and not result.reused and result.selftest is not None
    assert result.previous == first.name and (result.slot.path / "model.tflite").is_file()


def test_keys_default_to_root_keys_when_a_root_is_given(kit: Kit, root: Path) -> None:
    with pytest.raises(SignatureError, match=r"not among the trusted keys in .*state/keys"):
        install_bundle(kit.bundle, root=root)
    assert not (root / "bundles").exists(), "refused before anything is written"
    shutil.copytree(kit.keys_dir, root / "keys")
    assert install_bundle(kit.bundle, root=root).key_id is not None


def test_the_commands_print_one_line_each(
    kit: Kit, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = versions(kit, tmp_path, 2)[0]
    for bundle in (kit.bundle, v2):
        assert edge("install", bundle, "--root", root, "--trusted-keys", kit.keys_dir) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("installed digits 2 (sha ")
    assert " (was digits-1-" in lines[1]
    assert edge("installed", "--root", root) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("  digits-1-") and listed[1].startswith("* digits-2-")
    assert "for linux-x86_64, installed 20" in listed[1]
    assert edge("rollback", "--root", root) == 0
    assert capsys.readouterr().out.startswith("rolled back to digits 1 (")
    assert edge("installed", "--root", root, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["version"], d["current"]) for d in data] == [(1, True), (2, False)]
    assert edge("install", v2, "--root", root, "--trusted-keys", kit.keys_dir, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reused"] and result["selftest"]["passed"] == 8
    assert edge("install", kit.bundle, "--root", root, "--trusted-keys", kit.keys_dir) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "version: digits 1 is older than the installed digits 2" in err[0]


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '"events"', '{"schema": 2, "events": []}', '{"schema": 1, "events": {}}'],
)
def test_a_broken_history_file_is_named_with_what_to_do(tmp_path: Path, text: str) -> None:
    (tmp_path / "history.json").write_text(text)
    with pytest.raises(InstallError, match=r"history\.json: (unreadable .*move it away|expected)"):
        read_history(tmp_path)


def test_a_member_refused_while_streaming_leaves_not_even_the_root(
    kit: Kit, tmp_path: Path
) -> None:
    bad = tamper(kit.bundle, tmp_path / "bad.tar.gz", "model.tflite", 100)
    root = tmp_path / "new" / "state"
    with pytest.raises(IntegrityError, match=r"member model\.tflite: sha256"):
        install_bundle(bad, root=root, trusted_keys=kit.keys_dir)
    assert not (tmp_path / "new").exists(), "the folders made for the install are gone"


def test_a_member_larger_than_its_signed_size_is_refused_from_its_header(
    kit: Kit, tmp_path: Path
) -> None:
    """The manifest signs every member's size: 64 MB of zeros in place of labels.txt is
    refused from the tar header, before a byte of it is inflated or written."""
    from edge.bundle.archive import pack_archive, read_archive
    from edge.bundle.manifest import load_manifest

    members = read_archive(kit.bundle)
    manifest = load_manifest(members["manifest.json"])
    assert manifest.sizes is not None and manifest.sizes["labels.txt"] == len(members["labels.txt"])
    members["labels.txt"] = bytes(64 * 2**20)
    bad = tmp_path / "big-labels.tar.gz"
    bad.write_bytes(pack_archive(members))
    root = tmp_path / "root"
    with pytest.raises(
        IntegrityError, match=r"labels\.txt.*67,108,864 bytes, the signed manifest says"
    ):
        install_bundle(bad, root=root, trusted_keys=kit.keys_dir)
    assert not root.exists()
