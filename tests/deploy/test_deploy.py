"""`packager deploy` over a real SSH connection to this machine, standing in for a device.

The "device" runs the project's own edge (the venv's ``edge``) with a temporary install
root; only the provisioning test makes a fresh venv there from a wheel of the project.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from edge.cli.support import make_parser, run
from edge.device.profiles import load_profile
from packager.cli.deploy import add_deploy
from packager.deploy.ssh import DeployError, UnreachableError, deploy, requirements
from tests.broker import free_port
from tests.deploy.conftest import needs_root
from tests.install.bundles import Kit, variant
from tests.sshd import Sshd


def device_edge(python: str, folder: Path) -> str:
    """The device's edge command: ``python -m edge.cli.main`` of that Python's install."""
    del folder  # the device's edge is the installed package itself
    return shlex.join([python, "-m", "edge.cli.main"])


@pytest.fixture(scope="module")
def edge(sshd: Sshd) -> str:
    """The device's edge for most tests: this venv's."""
    return device_edge(sys.executable, sshd.folder)


def reach(sshd: Sshd) -> dict[str, Any]:
    """deploy()'s connection arguments for the test server."""
    return {"port": sshd.port, "identity": sshd.client_key, "ssh_options": sshd.client_options}


def leftovers() -> set[str]:
    return {p.name for p in Path("/tmp").glob("edge-deploy.*")}


def packager(*args: str | Path) -> int:
    return run(make_parser("packager", "test", "deploy", (add_deploy,)), [str(a) for a in args])


def trusted_pub(kit: Kit) -> Path:
    return next(kit.keys_dir.glob("*.pub"))


def test_deploy_installs_on_the_device_and_returns_its_answer(
    kit: Kit, sshd: Sshd, edge: str, tmp_path: Path
) -> None:
    root, before = tmp_path / "device-root", leftovers()
    seen: list[str] = []
    result = deploy(
        kit.bundle,
        sshd.destination,
        **reach(sshd),
        remote_edge=edge,
        remote_root=str(root),
        trust=trusted_pub(kit),
        on_step=lambda step: seen.append(step.name),
    )
    assert seen == ["trust", "install"] and [s.returncode for s in result.steps] == [0, 0]
    assert result.answer.startswith("installed digits 1 (sha ")
    assert "; self-test 8/8 within " in result.answer and "current -> digits-1-" in result.answer
    assert (root / "keys" / trusted_pub(kit).name).read_bytes() == trusted_pub(kit).read_bytes()
    assert os.readlink(root / "current").startswith("bundles/digits-1-")
    assert leftovers() == before, "the remote temporary folder is removed"
    install = result.steps[1]
    assert install.argv[:5] == ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")


def test_the_command_prints_what_the_device_answered(
    kit: Kit, sshd: Sshd, edge: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "device-root"
    options = [arg for option in sshd.client_options for arg in ("-o", option)]
    code = packager(
        "deploy",
        kit.bundle,
        "--host",
        f"{sshd.destination}:{sshd.port}",
        "--identity",
        sshd.client_key,
        *options,
        "--remote-edge",
        edge,
        "--remote-root",
        root,
        "--trust",
        trusted_pub(kit),
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"[trust] trusted {trusted_pub(kit).name} in {root}/keys"
    assert out[1].startswith("[install] installed digits 1 (sha ")
    assert out[2] == f"deployed digits 1 to {sshd.destination}: {out[1].removeprefix('[install] ')}"


def test_a_bundle_the_device_refuses_is_a_deploy_error_with_its_message(
    kit: Kit, sshd: Sshd, edge: str, tmp_path: Path
) -> None:
    root = tmp_path / "device-root"
    deploy(
        kit.bundle,
        sshd.destination,
        **reach(sshd),
        remote_edge=edge,
        remote_root=str(root),
        trust=trusted_pub(kit),
    )
    installed = os.readlink(root / "current")
    stranger = variant(
        kit, tmp_path / "digits-2-linux-x86_64.tar.gz", fields={"version": 2}, key=kit.other_key
    )
    with pytest.raises(DeployError) as caught:
        deploy(stranger, sshd.destination, **reach(sshd), remote_edge=edge, remote_root=str(root))
    error = caught.value
    assert (error.step, error.returncode) == ("install", 2)
    assert str(error).startswith(f"{sshd.destination}: edge install failed on the device (exit 2)")
    assert "edge: error: " in str(error) and "not among the trusted keys" in str(error)
    assert os.readlink(root / "current") == installed, "the device kept what it had"


def test_an_unreachable_device_is_said_so(kit: Kit, tmp_path: Path) -> None:
    with pytest.raises(UnreachableError, match=r"ssh could not connect or log in \(exit 255\)"):
        deploy(
            kit.bundle,
            f"nobody@127.0.0.1:{free_port()}",
            remote_root=str(tmp_path),
            ssh_options=["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"],
        )


def test_requirements_follow_the_profile(kit: Kit) -> None:
    litert = requirements(None, load_profile("linux-x86_64"))
    assert "ai-edge-litert>=2.0" in litert and any(r.startswith("numpy") for r in litert)
    coral = requirements(None, load_profile("rpi-coral-usb"))
    assert not any(r.lower().startswith("ai-edge-litert") for r in coral)
    assert coral[-3:] == ["tflite-runtime>=2.14,<2.15", "numpy<2", "opencv-python-headless<=4.11"]


def test_a_dry_run_lists_the_provisioning_commands(
    kit: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    code = packager(
        "deploy",
        kit.bundle,
        "--host",
        "pi@raspberrypi.local",
        "--provision",
        "--device",
        "rpi-coral-usb",
        "--sudo",
        "--dry-run",
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "python3 -m venv /opt/edge/venv" in out
    assert (
        "would run: ssh -o BatchMode=yes -o ConnectTimeout=10 pi@raspberrypi.local sudo -n sh -c"
        in out
    )
    assert "/opt/edge/venv/bin/python -m pip install" in out and "--force-reinstall" in out
    assert "'tflite-runtime>=2.14,<2.15' 'numpy<2'" in out
    assert "/opt/edge/venv/bin/edge install" in out and "/opt/edge/venv/bin/edge info" in out
    assert out.rstrip().endswith("dry run: digits 1 to pi@raspberrypi.local, nothing was run")


def _device_python_with_dependencies(user_base: Path, folder: Path) -> None:
    """Give the device's base Python this venv's packages (not the project itself) through
    its user site, so a venv made with --system-site-packages has every dependency."""
    site = Path(sysconfig.get_paths()["purelib"])
    farm = folder / "device-site"
    farm.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(("edge_inference", "__editable__", "__pycache__")):
            (farm / entry.name).symlink_to(entry)
    target = user_base / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (target / "site-packages").mkdir(parents=True, exist_ok=True)
    (target / "site-packages" / "device-deps.pth").write_text(f"{farm}\n")


@pytest.mark.slow
@needs_root  # the user step creates a system user
def test_provision_makes_a_venv_from_the_wheel_and_runs_edge_there(
    kit: Kit, sshd: Sshd, tmp_path: Path, names: tuple[str, str]
) -> None:
    from packager.deploy.ssh import Provision, build_wheel

    _device_python_with_dependencies(Path(sshd.set_env["PYTHONUSERBASE"]), tmp_path)
    wheel = build_wheel(tmp_path / "wheels")
    venv, root = tmp_path / "opt-edge" / "venv", tmp_path / "device-root"
    setup = Provision(
        venv=str(venv),
        python=sys._base_executable,  # type: ignore[attr-defined]
        system_site_packages=True,
        pip_args=("--no-index",),
        unit_dir=str(tmp_path / "units"),
        etc_dir=str(tmp_path / "etc"),
        user=names[0],  # not edge: this machine's own users stay as they are
    )
    result = deploy(
        kit.bundle,
        sshd.destination,
        **reach(sshd),
        remote_root=str(root),
        trust=trusted_pub(kit),
        provision=setup,
        wheel=wheel,
        remote_edge=device_edge(f"{venv}/bin/python", tmp_path),
    )
    steps = {s.name: s for s in result.steps}
    assert list(steps) == ["provision", "user", "trust", "install", "service", "info"]
    user = pwd.getpwnam(names[0])  # the test sshd runs as root: a real system user
    assert (user.pw_dir, user.pw_shell) == (str(root), "/usr/sbin/nologin")
    assert [g.gr_name for g in grp.getgrall() if names[0] in g.gr_mem] == ["video"]
    assert f"created the system user {names[0]}" in steps["user"].stdout
    assert f"created the venv {venv}" in steps["provision"].stdout
    assert "Successfully installed edge-inference-0.1.0" in steps["provision"].stdout
    assert "Requirement already satisfied: ai-edge-litert>=2.0" in steps["provision"].stdout
    assert result.answer.startswith("installed digits 1 (sha ") and "self-test 8/8" in result.answer
    where = subprocess.run(
        sshd.ssh_command(f"{venv}/bin/python -c 'import edge; print(edge.__file__)'"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(f"{venv}/lib/"), "the device runs the wheel's edge"
    info = steps["info"].stdout
    assert info.startswith("edge 0.1.0  python 3.") and "ai-edge-litert" in info
    service = steps["service"].stdout
    if "systemd is absent" not in service:
        unit = (tmp_path / "units" / "edge.service").read_text()
        assert f"ExecStart={venv}/bin/edge run --config {tmp_path / 'etc' / 'edge.yaml'}" in unit
        assert (tmp_path / "etc" / "edge.yaml").is_file()
