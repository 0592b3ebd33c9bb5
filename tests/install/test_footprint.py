"""What `edge run` loads of the install side: the parser's `service` command reads the
unit's default folders and the daemon reads installed slots, neither needs the installer,
the verifier or cryptography (7 MB RSS, only to check a signature; docs/runtime.md,
"Memory"). The package names still load on use."""

from __future__ import annotations

import json
import subprocess
import sys

SIGNING = ("cryptography", "edge.bundle.signing", "edge.install.installer")


def loaded_after(statement: str) -> list[str]:
    """The SIGNING modules a fresh interpreter holds after ``statement``."""
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps([m for m in {SIGNING!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return list(json.loads(done.stdout))


def test_edge_run_loads_no_signature_code() -> None:
    statement = (
        "from edge.cli.main import build_parser\n"
        "build_parser()\n"
        "import edge.daemon.daemon, edge.install.slots, edge.bundle.manifest"
    )
    assert loaded_after(statement) == []


def test_the_package_names_still_load_on_use() -> None:
    assert loaded_after("from edge.bundle import open_bundle") == [
        "cryptography",
        "edge.bundle.signing",
    ]
    assert loaded_after("from edge.install import install_bundle") == list(SIGNING)
