"""The parallelism plan: what each setting gives, and what auto picks from the
measured cost of a real invoke."""

from __future__ import annotations

import logging
import re

import pytest

from edge.errors import ConfigError
from edge.runtime import load_again, load_model
from edge.runtime.pool import TINY_MS, check_parallelism, cpu_first, invoke_ms, load_plan, plan
from tests.models import DigitsModels


def test_each_setting_gives_its_plan() -> None:
    assert plan("threads", cores=4).shape == (1, 4)
    assert plan("threads", cores=4, threads=2).shape == (1, 2)
    assert plan("interpreters", cores=4).shape == (4, 1)
    assert plan("3x2", cores=4).shape == (3, 2)


def test_auto_follows_the_cost_the_delegate_and_explicit_threads() -> None:
    heavy = plan("auto", cores=2, cost_ms=lambda: 3.6)
    assert heavy.shape == (2, 1) and "3.60 ms" in heavy.reason
    assert plan("auto", cores=2, cost_ms=lambda: TINY_MS / 2).shape == (1, 1)
    assert plan("auto", cores=2, threads=2, cost_ms=lambda: 3.6).shape == (1, 2)
    assert plan("auto", cores=4, delegate="edgetpu", cost_ms=lambda: 9.0).interpreters == 1
    assert plan("auto", cores=1, cost_ms=lambda: 9.0).shape == (1, 1)


@pytest.mark.parametrize("bad", ["", "fast", "0x1", "2x", "x2", "2*1"])
def test_a_bad_setting_is_named(bad: str) -> None:
    with pytest.raises(ConfigError, match="LxT"):
        check_parallelism(bad)


def test_the_plan_is_loaded_around_the_measured_runner(
    digits: DigitsModels, caplog: pytest.LogCaptureFixture
) -> None:
    runner = load_model(digits.tflite["int8"], threads=1)
    cost = invoke_ms(runner)  # its value is the machine's business: no timed assertion
    assert cost > 0
    chosen = plan("auto", cores=2, cost_ms=lambda: TINY_MS / 2)
    assert load_plan(chosen, runner, lambda n: load_model(digits.tflite["int8"], threads=n)) == [
        runner
    ]
    with caplog.at_level(logging.INFO, logger="edge.runtime.pool"):
        two = load_plan(plan("2x1"), runner, lambda n: load_again(runner, threads=n))
    assert two[0] is runner and len(two) == 2 and two[1].threads == 1
    # what the second interpreter costs is in the log line (its size is the machine's)
    took = r"the 1 beyond the first took -?\d+\.\d MB resident to load$"
    assert re.search(took, caplog.text.strip())


def test_only_a_chain_that_starts_on_the_cpu_is_measured_on_one_thread() -> None:
    assert cpu_first(["xnnpack", "builtin"]) and cpu_first(["builtin"])
    assert not cpu_first(["edgetpu:usb", "xnnpack", "builtin"])
