"""`edge service install`: the current bundle's unit and a default edge.yaml, in tmp folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edge.cli.install import add_service
from edge.cli.support import make_parser, run
from edge.daemon.config import load_config
from edge.daemon.model_spec import resolve_model
from edge.install import ServiceError, install_bundle, install_service
from tests.install.bundles import Kit


def edge(*args: str | Path) -> int:
    return run(make_parser("edge", "test", "service", (add_service,)), [str(a) for a in args])


def test_the_unit_and_config_are_written_from_the_current_slot(kit: Kit, tmp_path: Path) -> None:
    root, units, etc = tmp_path / "state", tmp_path / "units", tmp_path / "etc"
    with pytest.raises(ServiceError, match=r"no bundle is installed .*'edge install BUNDLE'"):
        install_service(root, unit_dir=units, etc_dir=etc)
    install_bundle(kit.bundle, root=root, trusted_keys=kit.keys_dir)
    result = install_service(root, unit_dir=units, etc_dir=etc)
    assert result.unit_path == units / "edge.service" and result.config_written
    unit = result.unit_path.read_text().splitlines()
    edge_here = Path(sys.executable).parent / "edge"
    assert f"ExecStart={edge_here} run --config {etc / 'edge.yaml'}" in unit
    assert f"WorkingDirectory={root}" in unit
    assert "Restart=on-failure" in unit and "WantedBy=multi-user.target" in unit
    config = load_config(etc / "edge.yaml")
    assert config.bundle == "current" and config.root == root.resolve()
    assert resolve_model(config.bundle, root=config.root).name == "digits"
    assert not result.enabled and "systemctl daemon-reload && systemctl enable" in result.describe()

    (etc / "edge.yaml").write_text("device_id: mine\n")
    again = install_service(root, unit_dir=units, etc_dir=etc, enable=True)
    assert not again.config_written and (etc / "edge.yaml").read_text() == "device_id: mine\n"
    assert not again.enabled, "never enabled outside /etc/systemd/system or without systemd"
    assert any("not enabled" in note for note in again.notes)


def test_edge_service_install_prints_one_line(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "state"
    install_bundle(kit.bundle, root=root, trusted_keys=kit.keys_dir)
    code = edge(
        "service",
        "install",
        "--root",
        root,
        "--unit-dir",
        tmp_path / "units",
        "--etc-dir",
        tmp_path / "etc",
        "--enable",
    )
    assert code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"wrote {tmp_path / 'units' / 'edge.service'}; ")
    assert "edge.yaml written" in out and len(out.splitlines()) == 1
    assert (tmp_path / "etc" / "edge.yaml").is_file()
