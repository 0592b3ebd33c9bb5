"""The whole way from the Makefile: train, `make package`, `make deploy` over real SSH,
install on the "device" (this machine behind a real sshd), self-test."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.models import DigitsModels
from tests.sshd import Sshd

REPO = Path(__file__).resolve().parents[2]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=600,
        check=False,
    )


def test_package_deploy_install_selftest(digits: DigitsModels, sshd: Sshd, tmp_path: Path) -> None:
    arrays = digits.arrays()
    np.savez(tmp_path / "train.npz", x=arrays["x_train"], y=arrays["y_train"])
    np.savez(tmp_path / "test.npz", x=arrays["x_test"], y=arrays["y_test"])
    keys = tmp_path / "keys"
    subprocess.run(
        [sys.executable, "-m", "packager.cli.main", "keygen", "--out", str(keys), "--name", "dev"],
        check=True,
        capture_output=True,
    )
    common = [
        f"MODEL={digits.keras}",
        f"CALIB={tmp_path / 'train.npz'}",
        f"EVAL={tmp_path / 'test.npz'}",
        f"KEY={keys / 'dev.key'}",
        f"DIST={tmp_path / 'dist'}",
        "DEVICE=linux-x86_64",
        "VERSION=3",
    ]
    packaged = make("package", *common)
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    bundle = tmp_path / "dist" / "digits-3-linux-x86_64.tar.gz"
    assert f"wrote {bundle}" in packaged.stdout.replace("\n", "")

    root = tmp_path / "device-root"
    flags = [
        "--port",
        str(sshd.port),
        "--identity",
        str(sshd.client_key),
        *(arg for option in sshd.client_options for arg in ("-o", option)),
        "--remote-root",
        str(root),
        "--remote-edge",
        shlex.join([sys.executable, "-m", "edge.cli.main"]),
    ]
    deployed = make(
        "deploy", *common, f"HOST={sshd.destination}", f"DEPLOY_FLAGS={shlex.join(flags)}"
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "installed digits 3" in deployed.stdout and "self-test 8/8" in deployed.stdout
    current = (root / "current").resolve()
    assert current.name.startswith("digits-3-") and (current / "manifest.json").is_file()
