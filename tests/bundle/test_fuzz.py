"""Fuzzing the bundle reader and the manifest parser: whatever the bytes, the answer is a
value or a BundleError (never a traceback of another type), and nothing is written outside
the install's folder. Inputs are random bytes, mutations of a real signed bundle (its gzip
bytes, and its tar bytes re-compressed so the tar parser sees them), tars of random
headers, and random or mutated manifest JSON. tests/fuzz_corpus/bundle/ keeps the nasty
inputs (made by hand, or found here) and every one is replayed.

Each fuzz test prints how many inputs it tried and how many crashed (run with -s); an
input that crashes is saved under build/fuzz/bundle/ for the corpus."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import shutil
import tarfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bundle.archive import pack_archive, read_archive
from edge.bundle.errors import BundleError
from edge.bundle.manifest import MANIFEST, SIGNATURE, canonical_json, load_manifest
from edge.bundle.signing import load_private_key, sign, write_keypair
from edge.install.verify import verify_bundle
from tests.bundle.test_manifest import MEMBERS, manifest_data

CORPUS = Path(__file__).resolve().parents[1] / "fuzz_corpus" / "bundle"
CRASHES = Path(__file__).resolve().parents[2] / "build" / "fuzz" / "bundle"
EXAMPLES = int(os.environ.get("EDGE_FUZZ_EXAMPLES", "250"))  # more to hunt, by hand
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_serial = itertools.count()


class Work:
    """A folder with trusted keys, a signed and an unsigned seed bundle, and a counter."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        private, _ = write_keypair(folder / "keys", "fuzz")
        self.keys = folder / "keys"
        data = manifest_data(runtime={"backend": "ai-edge-litert", "min_version": "1.0",
                                      "arch": "aarch64"})  # fmt: skip
        manifest = canonical_json(data)
        self.unsigned = pack_archive({**MEMBERS, MANIFEST: manifest}, mtime=0)
        signature = sign(manifest, load_private_key(private))
        self.signed = pack_archive({**MEMBERS, MANIFEST: manifest, SIGNATURE: signature}, mtime=0)
        self.manifest = manifest
        self.tried = 0
        self.crashed = 0
        self.outcomes: Counter[str] = Counter()

    def tar_of(self, archive: bytes) -> bytes:
        return gzip.decompress(archive)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    return Work(tmp_path_factory.mktemp("fuzz"))


def read_both(work: Work, data: bytes) -> None:
    """Both readers on ``data``: a value or a BundleError; a crash is saved and raised."""
    work.tried += 1
    case = work.folder / f"case-{next(_serial)}"
    case.mkdir()
    bundle = case / "b.tar.gz"
    bundle.write_bytes(data)
    made: list[Path] = []

    def into() -> Path:
        made.append(case / "incoming")
        made[-1].mkdir()
        return made[-1]

    def verify() -> object:
        return verify_bundle(
            bundle, trusted_keys=work.keys, allow_unsigned=True, check_device=False, into=into
        )

    try:
        for read in (lambda: read_archive(bundle), verify):
            try:
                read()
                work.outcomes["accepted"] += 1
            except BundleError as exc:
                work.outcomes[type(exc).__name__] += 1
    except Exception:
        work.crashed += 1
        CRASHES.mkdir(parents=True, exist_ok=True)
        (CRASHES / f"{hashlib.sha256(data).hexdigest()[:16]}.tar.gz").write_bytes(data)
        raise
    finally:
        outside = {p.name for p in case.iterdir()} - {"b.tar.gz", "incoming"}
        shutil.rmtree(case)
    assert not outside, f"written outside the install folder: {outside}"


def fuzz(work: Work, strategy: st.SearchStrategy[bytes], capsys: pytest.CaptureFixture[str],
         name: str) -> None:  # fmt: skip
    before_tried, before_crashed = work.tried, work.crashed
    work.outcomes.clear()

    @FUZZ
    @given(data=strategy)
    def run(data: bytes) -> None:
        read_both(work, data)

    try:
        run()
    finally:
        with capsys.disabled():
            print(f"\nfuzz {name}: {work.tried - before_tried} inputs, "
                  f"{work.crashed - before_crashed} crashes; outcomes of the two readers: "
                  f"{dict(work.outcomes.most_common())}")  # fmt: skip


def mutated(seed: Callable[[], bytes]) -> st.SearchStrategy[bytes]:
    """``seed()`` with some bytes replaced, a slice cut out or inserted, or truncated."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(seed())
        for _ in range(draw(st.integers(0, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(max_size=600))
        if draw(st.booleans()):
            start = draw(st.integers(0, len(data)))
            data[start : start + draw(st.integers(0, 1200))] = b""
        return bytes(data)

    return build()


def test_fuzz_random_bytes(work: Work, capsys: pytest.CaptureFixture[str]) -> None:
    gz_like = st.binary(max_size=2000).map(lambda b: b"\x1f\x8b\x08\x00" + b)
    fuzz(work, st.binary(max_size=4000) | gz_like, capsys, "random bytes")


def test_fuzz_mutated_gzip_of_a_real_bundle(work: Work, capsys: pytest.CaptureFixture[str]) -> None:
    seeds = st.sampled_from([work.signed, work.unsigned])
    fuzz(work, seeds.flatmap(lambda s: mutated(lambda: s)), capsys, "mutated .tar.gz")


def test_fuzz_mutated_tar_of_a_real_bundle(work: Work, capsys: pytest.CaptureFixture[str]) -> None:
    seeds = st.sampled_from([work.tar_of(work.signed), work.tar_of(work.unsigned)])
    tars = seeds.flatmap(lambda s: mutated(lambda: s))
    fuzz(work, tars.map(lambda t: gzip.compress(t, compresslevel=1, mtime=0)), capsys,
         "mutated tar, re-gzipped")  # fmt: skip


KINDS = [bytes([t]) for t in b"0123456789AgxKLSVMNDI\x00"]


@st.composite
def headers(draw: st.DrawFn, work: Work) -> bytes:
    """A tar with valid checksums of the real members (names and data) in any order, some
    left out, and now and then one odd or repeated name, a lying size, another type,
    random data or an extension header."""
    real = read_archive_bytes(work.signed)
    odd = ["../x", "a/b", ".h", "x" * 120, "/abs", "extra.bin"]
    chosen = draw(st.permutations(sorted(real)))[: draw(st.integers(1, len(real)))]
    if draw(st.integers(0, 3)) == 0:  # one odd or repeated name somewhere
        extra = draw(st.sampled_from(odd + chosen) | st.text(max_size=20))
        chosen.insert(draw(st.integers(0, len(chosen))), extra)
    out = io.BytesIO()
    for name in chosen:
        body = real.get(name, b"")
        if draw(st.integers(0, 5)) == 0:
            body = draw(st.binary(max_size=700))
        info = tarfile.TarInfo(name)
        info.size = len(body)
        if draw(st.integers(0, 4)) == 0:
            info.size = draw(st.integers(0, 3000) | st.integers(-(2**40), 2**44))
        if draw(st.integers(0, 7)) == 0:
            info.type = draw(st.sampled_from(KINDS) | st.binary(min_size=1, max_size=1))
            info.linkname = draw(st.sampled_from(["", "/etc/passwd", "model.tflite"]))
        formats: st.SearchStrategy[Literal[0, 1, 2]] = st.sampled_from(
            [tarfile.USTAR_FORMAT] * 4 + [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]
        )
        try:
            out.write(info.tobuf(draw(formats), "utf-8", "surrogateescape"))
        except (ValueError, UnicodeError, OverflowError):
            continue
        out.write(body + bytes(-len(body) % 512))
    if draw(st.booleans()):
        out.write(bytes(1024))
    return gzip.compress(out.getvalue(), compresslevel=1, mtime=0)


def read_archive_bytes(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def test_fuzz_tars_of_random_headers(work: Work, capsys: pytest.CaptureFixture[str]) -> None:
    fuzz(work, headers(work), capsys, "tars of real and random members")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def manifests(draw: st.DrawFn) -> bytes:
    """A real manifest with fields dropped, replaced by random JSON, or added; or raw bytes."""
    data: dict[str, Any] = manifest_data()
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(sorted(data)) | st.text(max_size=8))
        choice = draw(st.integers(0, 2))
        if choice == 0:
            data.pop(key, None)
        elif choice == 1:
            data[key] = draw(JSON)
        elif isinstance(data.get(key), dict) and data[key]:
            inner = draw(st.sampled_from(sorted(data[key])))
            data[key] = {**data[key], inner: draw(JSON)}
    raw = json.dumps(data).encode()  # NaN and Infinity included: Python's json reads them
    return draw(st.sampled_from([raw, raw[: len(raw) // 2], raw.replace(b'"', b"'", 1)])
                | st.binary(max_size=300))  # fmt: skip


def test_fuzz_the_manifest_parser(capsys: pytest.CaptureFixture[str]) -> None:
    counts = {"tried": 0, "crashed": 0, "accepted": 0}

    @FUZZ
    @given(raw=manifests())
    def run(raw: bytes) -> None:
        counts["tried"] += 1
        try:
            load_manifest(raw, origin="fuzz")
            counts["accepted"] += 1
        except BundleError:
            pass
        except Exception:
            counts["crashed"] += 1
            raise

    try:
        run()
    finally:
        with capsys.disabled():
            print(f"\nfuzz manifest parser: {counts['tried']} inputs, {counts['crashed']} "
                  f"crashes ({counts['accepted']} valid)")  # fmt: skip


#: What verify_bundle says of each corpus file (unsigned allowed, device not checked).
EXPECTED = {
    "bad-header-checksum.tar.gz": "bad checksum",
    "dotdot-member.tar.gz": "member '../escape': parent directory (..) in the path",
    "gnu-long-name.tar.gz": "member '././@LongLink': extended header (pax or GNU)",
    "manifest-2mib.tar.gz": "manifest.json and manifest.sig may be at most 1,048,576 each",
    "members-1000.tar.gz": "member 'm64': member count: more than 64 members",
    "model-size-lies.tar.gz": "'model.tflite': 10,000 bytes, the signed manifest says 16",
    "negative-size-base256.tar.gz": "member 'model.tflite': a negative size in its header",
    "not-gzip-passwd.tar.gz": "not a readable gzip'd tar: not gzip data (a bundle is a .tar.gz)",
    "old-member-order-unsigned.tar.gz": "",  # accepted: bundles from before the order read
    "pax-header-4mb.tar.gz": "member '././@PaxHeader': extended header (pax or GNU)",
    "signature-after-members.tar.gz": "'manifest.sig': member order",
    "sparse-member.tar.gz": "member 'model.tflite': sparse file",
    "symlink-to-etc-passwd.tar.gz": "member 'model.tflite': symbolic link",
    "truncated-gzip.tar.gz": "the file ends before the gzip stream does (truncated)",
    "zeros-64mib-after-the-end.tar.gz": "decompresses to more than the size limit allows",
    "zeros-64mib-before-manifest.tar.gz": "'model.tflite': comes before manifest.json",
}


def test_the_corpus_is_all_expected() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.tar.gz")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_corpus_replays_with_its_answer(work: Work, name: str, tmp_path: Path) -> None:
    read_both(work, (CORPUS / name).read_bytes())
    into = tmp_path / "incoming"

    def make() -> Path:
        into.mkdir()
        return into

    if not EXPECTED[name]:
        verify_bundle(CORPUS / name, trusted_keys=work.keys, allow_unsigned=True,
                      check_device=False, into=make)  # fmt: skip
        assert {p.name for p in into.iterdir()} == {*MEMBERS, MANIFEST}
        return
    with pytest.raises(BundleError) as caught:
        verify_bundle(CORPUS / name, trusted_keys=work.keys, allow_unsigned=True,
                      check_device=False)  # fmt: skip
    assert EXPECTED[name] in str(caught.value)
