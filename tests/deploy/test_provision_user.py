"""The service user `packager deploy --provision` creates, and a deploy to a device that has
no edge yet, over a real SSH connection to this machine (the test sshd runs as root)."""

from __future__ import annotations

import grp
import pwd
import subprocess
from pathlib import Path

import pytest

from edge.device.profiles import load_profile
from packager.bundle.unit import unit_groups
from packager.deploy.scripts import user_script
from packager.deploy.ssh import DeployError, deploy
from tests.deploy.conftest import needs_root
from tests.deploy.test_deploy import packager, reach, trusted_pub
from tests.install.bundles import Kit
from tests.sshd import Sshd


def on_device(sshd: Sshd, script: str) -> subprocess.CompletedProcess[str]:
    argv = sshd.ssh_command("sh", "-c", f"'{script}'")
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def test_the_profiles_give_the_groups_of_their_devices() -> None:
    assert unit_groups(load_profile("rpi4")) == ["video"]
    assert unit_groups(load_profile("rpi-coral-usb")) == ["video", "plugdev"]
    assert unit_groups(load_profile("coral-devboard")) == ["video", "apex"]


@needs_root
def test_the_service_user_is_created_once_with_its_groups(
    sshd: Sshd, names: tuple[str, str], tmp_path: Path
) -> None:
    user, group = names
    home = str(tmp_path / "state")
    script = user_script(user, home, ["video", group, "bad:name"])
    first = on_device(sshd, script.replace("'", "'\\''"))
    assert first.returncode == 0, first.stderr
    assert f"created the group {group}" in first.stdout
    assert "warning: could not create the group bad:name; skipped" in first.stderr
    entry = pwd.getpwnam(user)
    assert entry.pw_uid < 1000, "a system user"
    assert (entry.pw_dir, entry.pw_shell) == (home, "/usr/sbin/nologin")
    assert not Path(home).exists(), "the home (the state dir) is systemd's StateDirectory="
    members = {g.gr_name for g in grp.getgrall() if user in g.gr_mem}
    assert members == {"video", group}
    again = on_device(sshd, script.replace("'", "'\\''"))
    assert again.returncode == 0, again.stderr
    assert f"the user {user} exists" in again.stdout and "created" not in again.stdout
    assert pwd.getpwnam(user) == entry


def test_a_device_without_edge_is_told_to_provision(
    kit: Kit, sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, keys = tmp_path / "device-root", tmp_path / "device-keys"
    missing = str(tmp_path / "no-venv" / "bin" / "edge")
    with pytest.raises(DeployError) as caught:
        deploy(kit.bundle, sshd.destination, **reach(sshd), remote_edge=missing,
               remote_root=str(root), trusted_keys=str(keys), trust=trusted_pub(kit))  # fmt: skip
    assert caught.value.step == "trust"
    assert str(caught.value) == (
        f"{sshd.destination}: {missing}: not found on the device: edge is not installed "
        "there; run packager deploy with --provision to install it (or pass --remote-edge PATH)"
    )
    assert not keys.exists() and not root.exists(), "nothing was written on the device"
    options = [arg for option in sshd.client_options for arg in ("-o", option)]
    code = packager("deploy", kit.bundle, "--host", f"{sshd.destination}:{sshd.port}",
                    "--identity", sshd.client_key, *options, "--remote-edge", missing,
                    "--remote-root", root)  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run packager deploy with --provision" in err[0]
