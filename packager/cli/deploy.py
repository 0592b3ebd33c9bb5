"""`packager deploy`: install a bundle on a device over SSH (see packager/deploy/ssh.py).

``add_deploy`` adds the sub-command to an argparse sub-parsers object and sets its
``handler``, as in packager/cli/main.py. What the device prints is shown as each step ends;
a failed step (DeployError) is one line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_deploy"]


def add_deploy(sub: Any) -> None:
    p = sub.add_parser(
        "deploy",
        help="copy a bundle to a device over SSH and install it there",
        description="Copy BUNDLE to the device over ssh and run 'edge install' there "
        "(verify, new slot, atomic switch, self-test). --provision first builds a wheel of "
        "this project, creates the device's venv and installs it with the profile's "
        "runtime, then writes the systemd unit and shows 'edge info'.",
    )
    p.add_argument("bundle", type=Path, help="NAME-VERSION-DEVICE.tar.gz")
    p.add_argument("--host", required=True, help="user@host[:port] or an ssh alias")
    p.add_argument("--port", type=int, help="ssh port")
    p.add_argument("--identity", type=Path, metavar="KEY", help="ssh private key (ssh -i)")
    p.add_argument(
        "-o",
        "--ssh-option",
        action="append",
        default=[],
        dest="ssh_options",
        metavar="OPT",
        help="ssh -o option, e.g. StrictHostKeyChecking=accept-new",
    )
    p.add_argument(
        "--remote-edge",
        metavar="PATH",
        help="edge on the device (default: edge, or VENV/bin/edge with --provision)",
    )
    p.add_argument("--remote-root", metavar="DIR", help="install root on the device")
    p.add_argument("--trusted-keys", metavar="DIR", help="trusted keys folder on the device")
    p.add_argument(
        "--trust",
        type=Path,
        metavar="PUB",
        help="copy this public key into the device's trusted keys first",
    )
    p.add_argument("--sudo", action="store_true", help="run the steps with sudo -n on the device")
    p.add_argument("--force", action="store_true", help="install even if not newer")
    p.add_argument("--any-device", action="store_true", help="skip the profile and arch checks")
    p.add_argument("--allow-unsigned", action="store_true", help="accept an unsigned bundle")
    p.add_argument("--no-selftest", action="store_true", help="skip the self-test on the device")
    provision = p.add_argument_group("provisioning")
    provision.add_argument("--provision", action="store_true", help="set the device up first")
    provision.add_argument("--wheel", type=Path, help="this project's wheel (default: build it)")
    provision.add_argument(
        "--device",
        metavar="PROFILE",
        help="profile for the runtime packages (default: the bundle's)",
    )
    provision.add_argument("--venv", default="/opt/edge/venv", help="default /opt/edge/venv")
    provision.add_argument("--python", default="python3", help="Python that makes the venv")
    provision.add_argument(
        "--system-site-packages",
        action="store_true",
        help="let the venv see the system's packages (e.g. python3-opencv)",
    )
    provision.add_argument(
        "--pip-arg",
        action="append",
        default=[],
        dest="pip_args",
        metavar="ARG",
        help="extra pip install argument (repeat)",
    )
    provision.add_argument("--unit-dir", metavar="DIR", help="systemd unit folder on the device")
    provision.add_argument("--etc-dir", metavar="DIR", help="edge.yaml folder on the device")
    provision.add_argument("--enable", action="store_true", help="systemctl enable the unit")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.set_defaults(handler=_cmd_deploy)


def _show(step: Any) -> None:
    if step.returncode is None:
        shell = step.argv[-1].split("sh -c ", 1)[0] + "sh -c"  # "sh -c" or "sudo -n sh -c"
        print(f"[{step.name}] would run: {' '.join(step.argv[:-1])} {shell} '<script>'")
        for line in step.script.splitlines():
            print(f"    {line}")
        return
    for stream, text in ((sys.stdout, step.stdout), (sys.stderr, step.stderr)):
        for line in text.rstrip().splitlines():
            print(f"[{step.name}] {line}", file=stream)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from packager.deploy.ssh import Provision, deploy

    setup = None
    if args.provision:
        setup = Provision(
            venv=args.venv,
            python=args.python,
            system_site_packages=args.system_site_packages,
            pip_args=tuple(args.pip_args),
            unit_dir=args.unit_dir,
            etc_dir=args.etc_dir,
            enable=args.enable,
        )
    result = deploy(
        args.bundle,
        args.host,
        port=args.port,
        identity=args.identity,
        ssh_options=args.ssh_options,
        remote_edge=args.remote_edge,
        remote_root=args.remote_root,
        trusted_keys=args.trusted_keys,
        trust=args.trust,
        sudo=args.sudo,
        force=args.force,
        any_device=args.any_device,
        allow_unsigned=args.allow_unsigned,
        selftest=not args.no_selftest,
        provision=setup or False,
        wheel=args.wheel,
        profile=args.device,
        dry_run=args.dry_run,
        on_step=_show,
    )
    m = result.manifest
    if result.dry_run:
        print(f"dry run: {m.name} {m.version} to {result.host}, nothing was run")
    else:
        print(f"deployed {m.name} {m.version} to {result.host}: {result.answer}")
    return 0


def register(sub: Any) -> None:
    add_deploy(sub)
