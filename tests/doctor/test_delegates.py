"""The delegate check loads real libraries through the real runtime: a missing one, a
gcc-built .so that is no plugin, and a plugin that refuses, as libedgetpu does without
a device."""

from __future__ import annotations

from pathlib import Path

from edge.device.profiles import load_profile
from edge.doctor import DoctorContext
from edge.doctor.runtime import EDGETPU_INSTALL, check_delegates
from tests.doctor.support import by_id, config, usb_device


def test_a_missing_library_is_reported_with_the_loaders_reason(root: Path) -> None:
    missing = root / "opt/vendor/libmissing_delegate.so"
    ctx = DoctorContext(root=root, config=config(runtime={"delegates": [f"external:{missing}"]}))

    (finding,) = check_delegates(ctx)

    assert (finding.id, finding.severity) == ("delegate.external", "problem")
    assert str(missing) in finding.finding
    assert "OSError" in finding.finding
    assert "cannot open shared object file: No such file or directory" in finding.finding
    assert "expected by runtime.delegates: external" in finding.finding
    assert (
        finding.fix == f"check that {missing} exists and its dependencies resolve (ldd {missing})"
    )


def test_a_library_without_the_plugin_symbols_is_not_a_delegate_plugin(
    root: Path, not_a_plugin_library: Path
) -> None:
    chain = [f"external:{not_a_plugin_library}", "xnnpack"]
    ctx = DoctorContext(root=root, config=config(runtime={"delegates": chain}))

    (finding,) = check_delegates(ctx)

    assert finding.severity == "problem"
    assert "AttributeError: not a TFLite delegate plugin" in finding.finding
    assert "tflite_plugin_create_delegate" in finding.finding
    assert "is not a TFLite external delegate" in finding.fix


def test_a_plugin_that_refuses_is_reported_with_its_error(
    root: Path, refusing_plugin_library: Path
) -> None:
    ctx = DoctorContext(
        root=root, config=config(runtime={"delegates": [f"external:{refusing_plugin_library}"]})
    )

    (finding,) = check_delegates(ctx)

    assert finding.severity == "problem"
    assert "ValueError: delegate refused to load" in finding.finding


def test_a_profile_without_delegate_libraries_has_nothing_to_load(root: Path) -> None:
    ctx = DoctorContext(root=root, profile=load_profile("rpi4"))

    (finding,) = check_delegates(ctx)

    assert (finding.id, finding.severity) == ("delegates", "ok")
    assert finding.finding == "profile rpi4: xnnpack -> builtin: no delegate library to load"


def test_the_coral_profile_expects_libedgetpu(root: Path) -> None:
    ctx = DoctorContext(root=root, profile=load_profile("rpi-coral-usb"))

    (finding,) = check_delegates(ctx)

    assert (finding.id, finding.severity) == ("delegate.edgetpu", "problem")
    assert "libedgetpu.so.1" in finding.finding
    assert "expected by profile rpi-coral-usb: edgetpu -> xnnpack -> builtin" in finding.finding
    assert finding.fix == EDGETPU_INSTALL


def test_by_default_missing_edgetpu_and_gpu_matter_only_with_their_hardware(root: Path) -> None:
    quiet = by_id(check_delegates(DoctorContext(root=root)))
    assert {f.severity for f in quiet.values()} == {"ok"}
    assert "no Coral is attached" in quiet["delegate.edgetpu"].finding

    usb_device(root, "2-1", "18d1", "9302", "5000")
    attached = by_id(check_delegates(DoctorContext(root=root)))
    assert attached["delegate.edgetpu"].severity == "problem"
    assert "a Coral is attached" in attached["delegate.edgetpu"].finding
    assert attached["delegate.gpu"].severity == "ok"
