"""The session's signed digits bundle, shared with tests/deploy through tests/install/bundles.py."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from tests.install.bundles import Kit, digits_kit
from tests.models import DigitsModels
from tests.sshd import Sshd, find_sshd


@pytest.fixture(scope="session")
def kit(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return digits_kit(digits, tmp_path_factory)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if find_sshd() is None:
        pytest.skip("sshd is not installed (apt-get install openssh-server openssh-client)")
    folder = tmp_path_factory.mktemp("sshd")
    # Sessions get a user site folder: what the provisioning test's device Python "has".
    with Sshd(folder, set_env={"PYTHONUSERBASE": str(folder / "device-user")}) as server:
        yield server


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creating users needs root")


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    """A user name and a group name nobody has, removed again after the test."""
    tag = secrets.token_hex(3)
    user, group = f"edge-t{tag}", f"edget{tag}"
    yield user, group
    subprocess.run(["userdel", user], capture_output=True, check=False)
    subprocess.run(["groupdel", group], capture_output=True, check=False)
