"""Delegate libraries compiled here with gcc, loaded by the real runtime.

Neither is an accelerator: one is a plain shared library without the plugin symbols,
the other is a genuine TFLite external-delegate plugin whose create call refuses,
as libedgetpu does when no Edge TPU is attached. They stand in for hardware that
cannot exist on this machine; the loading code around them is the real one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

NOT_A_PLUGIN = "int not_a_delegate(void) { return 42; }\n"

REFUSING_PLUGIN = r"""
#include <stddef.h>
typedef void (*report_fn)(const char *);
void *tflite_plugin_create_delegate(char **keys, char **values, size_t n, report_fn report) {
    (void)keys; (void)values; (void)n;
    if (report) report("fake accelerator: no device attached");
    return NULL;
}
void tflite_plugin_destroy_delegate(void *delegate) { (void)delegate; }
"""


def _compile(folder: Path, name: str, source: str) -> Path:
    c_file = folder / f"{name}.c"
    c_file.write_text(source)
    library = folder / f"lib{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(c_file)], check=True)
    return library


@pytest.fixture(scope="session")
def not_a_plugin_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real .so that lacks tflite_plugin_create_delegate (the runtime raises AttributeError)."""
    return _compile(tmp_path_factory.mktemp("delegates"), "not_a_delegate", NOT_A_PLUGIN)


@pytest.fixture(scope="session")
def refusing_plugin_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fake accelerator plugin: create returns NULL with a message (the runtime's ValueError)."""
    return _compile(tmp_path_factory.mktemp("delegates"), "refusing_delegate", REFUSING_PLUGIN)
