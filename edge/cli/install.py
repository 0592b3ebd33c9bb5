"""The install commands of `edge`: verify, install, rollback, installed, service install.

Each ``add_*`` adds one sub-command to an argparse sub-parsers object and sets its
``handler``, as in edge/cli/main.py. Each prints one line saying what happened; errors are
EdgeError subclasses, which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_install", "add_installed", "add_rollback", "add_service", "add_verify"]

ROOT_HELP = "install root (default /var/lib/edge as root, else ~/.local/state/edge)"
KEYS_HELP = "folder of trusted .pub keys (default ROOT/keys with --root, else /etc/edge/keys)"


def _root(args: argparse.Namespace) -> Path:
    from edge.daemon.config import state_dir

    return args.root if args.root is not None else state_dir()


def add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="check a bundle against this device without installing it",
        description="What 'edge install' checks first: the archive, manifest.sig against "
        "the trusted keys, every member's sha256, the profile and arch against this "
        "device, and the runtime. Nothing is written.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--trusted-keys", type=Path, metavar="DIR", help=KEYS_HELP)
    p.add_argument("--allow-unsigned", action="store_true", help="accept an unsigned bundle")
    p.add_argument("--any-device", action="store_true", help="skip the profile and arch checks")
    p.set_defaults(handler=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from edge.install import verify_bundle

    v = verify_bundle(
        args.bundle,
        trusted_keys=args.trusted_keys,
        allow_unsigned=args.allow_unsigned,
        check_device=not args.any_device,
    )
    m = v.manifest
    signer = f"signed by {v.key_id}" if v.key_id else "UNSIGNED (allowed)"
    print(
        f"{args.bundle}: OK: {m.name} {m.version} (sha {v.sha256[:12]}), {signer}; "
        f"{v.device_note}; runtime {v.backend} {v.backend_version}"
    )
    return 0


def add_install(sub: Any) -> None:
    p = sub.add_parser(
        "install",
        help="verify a bundle, install it into a new slot, switch to it and self-test it",
        description="Verify the bundle, extract it into ROOT/bundles/NAME-VERSION-SHA, point "
        "ROOT/current at it atomically and run its self-test; a failed self-test "
        "switches back and removes the new slot. A version that is not newer than "
        "the installed one is refused unless --force.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--root", type=Path, metavar="DIR", help=ROOT_HELP)
    p.add_argument("--trusted-keys", type=Path, metavar="DIR", help=KEYS_HELP)
    p.add_argument("--force", action="store_true", help="install even if not newer")
    p.add_argument("--allow-unsigned", action="store_true", help="accept an unsigned bundle")
    p.add_argument("--no-selftest", action="store_true", help="do not run the self-test")
    p.add_argument("--any-device", action="store_true", help="skip the profile and arch checks")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_cmd_install)


def _cmd_install(args: argparse.Namespace) -> int:
    from edge.install import install_bundle

    result = install_bundle(
        args.bundle,
        root=args.root,
        trusted_keys=args.trusted_keys,
        force=args.force,
        allow_unsigned=args.allow_unsigned,
        selftest=not args.no_selftest,
        check_device=not args.any_device,
    )
    print(json.dumps(result.to_dict()) if args.json else result.describe())
    return 0


def add_rollback(sub: Any) -> None:
    p = sub.add_parser(
        "rollback",
        help="point current back at the previously installed bundle",
        description="Switch ROOT/current back one install, following history.json; run it "
        "again to go further back. Slots are kept.",
    )
    p.add_argument("--root", type=Path, metavar="DIR", help=ROOT_HELP)
    p.set_defaults(handler=_cmd_rollback)


def _cmd_rollback(args: argparse.Namespace) -> int:
    from edge.install import rollback

    root = _root(args)
    slot = rollback(root)
    print(f"rolled back to {slot.title} ({slot.path}); current -> {slot.name}")
    return 0


def add_installed(sub: Any) -> None:
    p = sub.add_parser(
        "installed",
        help="list the installed bundles",
        description="Every slot under ROOT/bundles, oldest version first; * marks current.",
    )
    p.add_argument("--root", type=Path, metavar="DIR", help=ROOT_HELP)
    p.add_argument("--json", action="store_true", help="print the slots as JSON")
    p.set_defaults(handler=_cmd_installed)


def _cmd_installed(args: argparse.Namespace) -> int:
    from edge.install.slots import installed_dates, list_installed

    root = _root(args)
    slots = list_installed(root)
    dates = installed_dates(root) if slots else {}
    if args.json:
        print(json.dumps([s.to_dict() | {"installed_at": dates.get(s.name)} for s in slots]))
        return 0
    if not slots:
        print(f"no bundles installed under {root}")
        return 0
    for s in slots:
        m = s.manifest
        print(
            f"{'*' if s.current else ' '} {s.name}  {m.name} {m.version} for {m.device}, "
            f"installed {dates.get(s.name, 'unknown')}"
        )
    return 0


def add_service(sub: Any) -> None:
    from edge.install.service import DEFAULT_ETC_DIR, DEFAULT_UNIT_DIR

    p = sub.add_parser(
        "service",
        help="install the systemd unit of the current bundle",
        description="Manage the edge daemon's systemd service.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install",
        help="write edge.service and a default edge.yaml",
        description="Write the current bundle's edge.service into the unit folder (ExecStart "
        "set to this edge) and its edge.yaml into the config folder unless one is "
        "there; with --enable, run systemctl daemon-reload and enable where systemd runs.",
    )
    install.add_argument("--root", type=Path, metavar="DIR", help=ROOT_HELP)
    install.add_argument(
        "--unit-dir",
        type=Path,
        default=DEFAULT_UNIT_DIR,
        metavar="DIR",
        help=f"default {DEFAULT_UNIT_DIR}",
    )
    install.add_argument(
        "--etc-dir",
        type=Path,
        default=DEFAULT_ETC_DIR,
        metavar="DIR",
        help=f"where edge.yaml goes (default {DEFAULT_ETC_DIR})",
    )
    install.add_argument("--enable", action="store_true", help="systemctl daemon-reload + enable")
    install.set_defaults(handler=_cmd_service_install)


def _cmd_service_install(args: argparse.Namespace) -> int:
    from edge.install import install_service

    result = install_service(
        _root(args), unit_dir=args.unit_dir, etc_dir=args.etc_dir, enable=args.enable
    )
    print(result.describe())
    return 0
