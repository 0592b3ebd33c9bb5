"""`packager deploy`: copy a bundle to a device over SSH and install it there.

Every step is one ``ssh`` call (argument lists, ``BatchMode=yes``, a connect timeout;
no local shell) running a small ``sh`` script on the device. A file travels on the
call's stdin into a ``mktemp -d`` folder that a ``trap`` removes however the step ends,
so the device needs only sshd and a POSIX shell, not scp or sftp (the scripts are in
packager/deploy/scripts.py). The steps:

1. ``provision`` (with ``provision``): copy a wheel of this project, create the venv
   (``python3 -m venv /opt/edge/venv``, optionally ``--system-site-packages``), install
   the wheel (``--no-deps --force-reinstall``, so a rebuilt wheel of the same version
   replaces the old one), then its requirements with the profile's runtime package and
   ``pip_constraints`` (ai-edge-litert is left out for tflite-runtime profiles);
2. ``user`` (with ``provision``): the unit's system user ``edge`` (no login shell, home
   the install root) with the profile's groups (video; plugdev or apex for a Coral),
   created when missing (a group that cannot be created is skipped with a warning);
   idempotent;
3. ``trust`` (with ``trust``): copy a public key into the device's trusted keys folder;
4. ``install``: ``edge install`` on the device; its one-line answer is the result.
   Without ``provision`` the trust and install steps first check that the device has
   edge, and stop with one line saying to use ``--provision`` when it has not;
5. ``service`` (with ``provision``): ``edge service install`` where ``systemctl``
   exists, else a line saying systemd is absent;
6. ``info`` (with ``provision``): ``edge info``, proof the installed edge runs.

Errors (the packager's branch of the tree in packager/errors.py)::

    EdgeError
    └── PackagerError
        └── DeployError          a step failed: .step, .returncode and the device's .output
            └── UnreachableError ssh could not connect or log in (exit status 255)
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import re
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bundle.archive import read_archive
from edge.bundle.manifest import MANIFEST, Manifest, check_files, load_manifest
from edge.bundle.signing import DEFAULT_TRUSTED_KEYS, load_public_key
from edge.device.profiles import DeviceProfile, load_profile
from edge.errors import ConfigError
from packager.bundle.unit import unit_groups
from packager.deploy.scripts import (
    MISSING_EDGE,
    join,
    missing_edge,
    need_edge,
    provision_script,
    service_script,
    trust_script,
    upload,
    user_script,
)
from packager.errors import PackagerError

CONNECT_TIMEOUT_S = 10
#: step -> (what it does, in words; its timeout in seconds)
STEPS = {
    "provision": ("provisioning", 1800),
    "user": ("creating the service user", 120),
    "trust": ("trusting the key", 60),
    "install": ("edge install", 600),
    "service": ("edge service install", 120),
    "info": ("edge info", 120),
}
TAIL_LINES = 5
SSH_FAILED = 255
DISTRIBUTION = "edge-inference"
STATE_DIR = "/var/lib/edge"  # the unit's StateDirectory=, the service user's home


class DeployError(PackagerError):
    """A deploy step failed; ``output`` holds what the device printed."""

    def __init__(
        self, message: str, *, step: str, returncode: int | None = None, output: str = ""
    ) -> None:
        super().__init__(message)
        self.step, self.returncode, self.output = step, returncode, output


class UnreachableError(DeployError):
    """ssh could not connect to the device or log in."""


@dataclass(frozen=True)
class Provision:
    """How to set the device up: the venv, the Python that makes it, pip's extra arguments
    (e.g. ``--no-index``, ``--find-links DIR``), and where the systemd unit goes."""

    venv: str = "/opt/edge/venv"
    python: str = "python3"
    system_site_packages: bool = False  # e.g. to use Debian's python3-opencv
    pip_args: tuple[str, ...] = ()
    unit_dir: str | None = None  # default: edge's, /etc/systemd/system
    etc_dir: str | None = None  # default: edge's, /etc/edge
    enable: bool = False
    # the service user: the unit's User= (edge); groups None: the profile's (video, and
    # plugdev or apex for a Coral; packager.bundle.unit); home: the install root
    user: str = "edge"
    groups: tuple[str, ...] | None = None

    @property
    def edge(self) -> str:
        return f"{self.venv}/bin/edge"


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    returncode: int | None = None  # None: not run (dry run)
    stdout: str = ""
    stderr: str = ""
    script: str = field(default="", repr=False)  # what ran on the device


@dataclass(frozen=True)
class DeployResult:
    bundle: Path
    host: str
    manifest: Manifest
    steps: tuple[Step, ...]
    dry_run: bool

    @property
    def answer(self) -> str:
        """What ``edge install`` printed on the device."""
        return next((s.stdout.strip() for s in self.steps if s.name == "install"), "")


def parse_host(host: str, port: int | None) -> tuple[str, int | None]:
    """``user@host:2222`` -> (``user@host``, 2222); a port in both places must agree."""
    if not host or host.startswith("-") or any(c.isspace() for c in host):
        raise ConfigError(f"--host {host!r}: expected user@host[:port] or an ssh alias")
    match = re.fullmatch(r"([^:\[\]]+):(\d+)", host)
    if match is None:
        return host, port
    found = int(match.group(2))
    if port is not None and port != found:
        raise ConfigError(f"--host {host} says port {found} and --port says {port}; give one")
    return match.group(1), found


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-TAIL_LINES:]) or "no output"


def _wheel_metadata(wheel: Path) -> Any:
    try:
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            text = archive.read(name).decode("utf-8")
    except (OSError, zipfile.BadZipFile, StopIteration) as exc:
        raise ConfigError(f"{wheel}: not a wheel with .dist-info/METADATA ({exc})") from exc
    return email.parser.Parser().parsestr(text)


def requirements(wheel: Path | None, profile: DeviceProfile) -> list[str]:
    """What pip installs beside the wheel: its requirements (the installed project's
    without a wheel), the profile's runtime package and its pip_constraints."""
    meta = _wheel_metadata(wheel) if wheel else importlib.metadata.metadata(DISTRIBUTION)
    needs = [r for r in (meta.get_all("Requires-Dist") or []) if "extra ==" not in r]
    runtime = profile.runtime
    if runtime.package != "ai-edge-litert":  # the project's default runtime; not this one's
        needs = [r for r in needs if not re.match(r"ai[-_.]edge[-_.]litert\b", r, re.I)]
    return list(dict.fromkeys([*needs, runtime.requirement(), *runtime.pip_constraints]))


def build_wheel(out_dir: Path, project: Path | None = None) -> Path:
    """``pip wheel --no-deps PROJECT -w OUT_DIR``; the wheel's path."""
    source = project or Path(__file__).resolve().parents[2]
    if not (source / "pyproject.toml").is_file():
        message = f"{source}: no pyproject.toml to build a wheel from; pass --wheel"
        raise DeployError(message, step="wheel")
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out_dir)]
    done = subprocess.run(
        [*argv, str(source)], capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode != 0:
        message = f"building the wheel failed: {_tail(done.stderr + done.stdout)}"
        raise DeployError(message, step="wheel", returncode=done.returncode)
    wheels = sorted(out_dir.glob("edge_inference-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise DeployError(f"pip wheel wrote no edge_inference wheel into {out_dir}", step="wheel")
    return wheels[-1]


def _edge_args(flags: dict[str, bool], options: dict[str, str | None]) -> list[str]:
    args = [flag for flag, on in flags.items() if on]
    for option, value in options.items():
        args += [option, value] if value is not None else []
    return args


class _Device:
    """Runs steps over ssh, reporting each one as it ends."""

    def __init__(
        self,
        host: str,
        ssh: list[str],
        sudo: bool,
        dry_run: bool,
        on_step: Callable[[Step], None] | None,
    ) -> None:
        self.host, self.base = host, ssh
        self.shell = "sudo -n sh -c " if sudo else "sh -c "
        self.dry_run, self.on_step, self.steps = dry_run, on_step, list[Step]()
        self.edge: list[str] = []  # the edge command the steps check for (need_edge)

    def run(self, name: str, script: str, stdin: Path | None = None) -> Step:
        argv = (*self.base, self.host, self.shell + shlex.quote(script))
        step = Step(name, argv, script=script)
        if not self.dry_run:
            step = self._call(step, stdin)
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        self._check(step)
        return step

    def _call(self, step: Step, stdin: Path | None) -> Step:
        feed: Any = nullcontext(subprocess.DEVNULL) if stdin is None else open(stdin, "rb")  # noqa: SIM115
        what, timeout = STEPS[step.name]
        try:
            with feed as source:
                done = subprocess.run(
                    step.argv, stdin=source, capture_output=True, check=False, timeout=timeout
                )
        except FileNotFoundError as exc:
            message = "ssh is not installed here (apt-get install openssh-client)"
            raise DeployError(message, step=step.name) from exc
        except subprocess.TimeoutExpired as exc:
            message = f"{self.host}: {what} took more than {timeout} s; stopped"
            raise DeployError(message, step=step.name) from exc
        out, err = (b.decode("utf-8", "replace") for b in (done.stdout, done.stderr))
        return Step(step.name, step.argv, done.returncode, out, err, step.script)

    def _check(self, step: Step) -> None:
        if step.returncode in (None, 0):
            return
        output = step.stderr.strip() or step.stdout.strip()
        if step.returncode == MISSING_EDGE and self.edge:
            message = f"{self.host}: {missing_edge(self.edge)}"
            raise DeployError(message, step=step.name, returncode=step.returncode, output=output)
        kind, message, hint = DeployError, f"{STEPS[step.name][0]} failed on the device", ""
        if step.returncode == SSH_FAILED:
            kind, message = UnreachableError, "ssh could not connect or log in"
            hint = "; check the host, --port, --identity and that sshd runs there"
        raise kind(
            f"{self.host}: {message} (exit {step.returncode}): {_tail(output)}{hint}",
            step=step.name,
            returncode=step.returncode,
            output=output,
        )


def _local_manifest(bundle: Path) -> Manifest:
    members = read_archive(bundle)
    if MANIFEST not in members:
        raise ConfigError(f"{bundle}: no {MANIFEST}; this is not a bundle")
    manifest = load_manifest(members[MANIFEST], origin=f"{bundle}:{MANIFEST}")
    check_files(manifest, members, origin=str(bundle))
    return manifest


def _ssh_base(port: int | None, identity: Path | None, options: Sequence[str]) -> list[str]:
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
    argv += ["-p", str(port)] if port is not None else []
    argv += ["-i", str(identity)] if identity is not None else []
    for option in options:
        argv += ["-o", option]
    return argv


def _wheel_name(wheel: Path | None) -> str:
    if wheel is not None:
        return wheel.name
    return f"edge_inference-{importlib.metadata.version(DISTRIBUTION)}-py3-none-any.whl"


def deploy(
    bundle: Path,
    host: str,
    *,
    port: int | None = None,
    identity: Path | None = None,
    ssh_options: Sequence[str] = (),
    remote_edge: str | None = None,
    remote_root: str | None = None,
    trusted_keys: str | None = None,
    trust: Path | None = None,
    sudo: bool = False,
    force: bool = False,
    any_device: bool = False,
    allow_unsigned: bool = False,
    selftest: bool = True,
    provision: bool | Provision = False,
    wheel: Path | None = None,
    wheel_dir: Path = Path("build/wheels"),
    profile: str | None = None,
    dry_run: bool = False,
    on_step: Callable[[Step], None] | None = None,
) -> DeployResult:
    """Install ``bundle`` on ``host`` over ssh (see the module docstring for the steps).

    ``ssh_options`` are ``-o`` values (``StrictHostKeyChecking=accept-new``).
    ``remote_edge`` is the device's edge command, split as a shell would
    (``/opt/edge/venv/bin/python -m edge.cli.main``). ``remote_root`` and ``trusted_keys`` are
    paths on the device, passed to its ``edge install``; ``trust`` is a local .pub copied
    into the device's trusted keys folder first. ``sudo`` runs every step through
    ``sudo -n`` (passwordless sudo), for /opt, /etc and /var/lib. ``provision=True`` uses
    :class:`Provision`'s defaults; ``wheel`` is built into ``wheel_dir`` when not given;
    ``profile`` defaults to the bundle's. With ``dry_run`` nothing runs and the steps hold
    the commands; ``on_step`` gets each step as it ends (before a failure is raised).
    """
    manifest = _local_manifest(bundle)
    destination, port = parse_host(host, port)
    if trust is not None:
        load_public_key(trust)  # a clear error for a missing file or a private key
    setup = Provision() if provision is True else provision or None
    ssh = _ssh_base(port, identity, ssh_options)
    device = _Device(destination, ssh, sudo, dry_run, on_step)
    edge = shlex.split(remote_edge or (setup.edge if setup else "edge"))
    if setup is not None:
        chosen = load_profile(profile or manifest.device)
        if wheel is None and not dry_run:
            wheel = build_wheel(wheel_dir)
        script = provision_script(
            venv=setup.venv,
            python=setup.python,
            system_site_packages=setup.system_site_packages,
            pip_args=setup.pip_args,
            wheel_name=_wheel_name(wheel),
            needs=requirements(wheel, chosen),
        )
        device.run("provision", script, wheel)
        groups = unit_groups(chosen) if setup.groups is None else setup.groups
        device.run("user", user_script(setup.user, remote_root or STATE_DIR, groups))
    check = "" if setup is not None else need_edge(edge)  # before anything is written
    device.edge = [] if setup is not None else edge
    if trust is not None:
        keys = trusted_keys or (f"{remote_root}/keys" if remote_root else str(DEFAULT_TRUSTED_KEYS))
        device.run("trust", trust_script(trust.name, keys, check), trust)
    flags = {"--force": force, "--any-device": any_device, "--allow-unsigned": allow_unsigned}
    args = _edge_args(
        {**flags, "--no-selftest": not selftest},
        {"--root": remote_root, "--trusted-keys": trusted_keys},
    )
    run_install = " ".join(
        [join(*edge, "install"), f'"$tmp"/{shlex.quote(bundle.name)}', *map(shlex.quote, args)]
    )
    device.run("install", check + upload(bundle.name, run_install), bundle)
    if setup is not None:
        places = {"--root": remote_root, "--unit-dir": setup.unit_dir, "--etc-dir": setup.etc_dir}
        device.run("service", service_script(edge, _edge_args({"--enable": setup.enable}, places)))
        device.run("info", join(*edge, "info"))
    return DeployResult(bundle, destination, manifest, tuple(device.steps), dry_run)
