"""What `edge run` loads of the install side: the parser's `service` command reads the
unit's default folders and the daemon reads installed slots, neither needs the installer,
the verifier or cryptography (7 MB RSS, only to check a signature; docs/runtime.md,
"Memory"). The package names still load on use."""

from __future__ import annotations

from tests.footprint import loaded_after

SIGNING = ("cryptography", "edge.bundle.signing", "edge.install.installer")


def _loaded(statement: str) -> list[str]:
    return loaded_after(statement, SIGNING)


def test_edge_run_loads_no_signature_code() -> None:
    statement = (
        "from edge.cli.main import build_parser\n"
        "build_parser()\n"
        "import edge.daemon.daemon, edge.install.slots, edge.bundle.manifest"
    )
    assert _loaded(statement) == []


def test_the_package_names_still_load_on_use() -> None:
    assert _loaded("from edge.bundle import open_bundle") == [
        "cryptography",
        "edge.bundle.signing",
    ]
    assert _loaded("from edge.install import install_bundle") == list(SIGNING)
