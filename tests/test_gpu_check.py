"""``benchmarks/gpu_check.sh`` fails when any of its stages fails, and runs all of them anyway.

Its stage runner is exercised on CPU by sourcing the script (which defines its functions and
runs nothing) and giving it commands that fail or pass; a whole run on a machine without CUDA
must fail too, since it checked nothing. Its training stage sets ``DEEPM3_TEST_ACCELERATOR=gpu``,
which the tests' tiny runs obey and then verify.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import accelerator

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def stages(out: Path, *commands: str) -> subprocess.CompletedProcess:
    """Source the script, run ``commands`` (``run_stage NAME CMD...`` lines), then its ``finish``."""
    body = "\n".join([f"source {SCRIPT}", f"start_log {out}", *commands, "finish"])
    return subprocess.run(["bash", "-c", body], capture_output=True, text=True, timeout=60)


def test_a_failing_stage_fails_the_check_after_every_stage_ran(tmp_path: Path) -> None:
    """A stage that fails with lots of output (the old ``pytest | tail | tee`` hid its status)."""
    done = stages(tmp_path, "run_stage noisy_failure bash -c 'seq 100; exit 3'", "run_stage later true")
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (tmp_path / "gpu_check.log").read_text()
    assert "-- noisy_failure: exit status 3" in summary and "-- later: exit status 0" in summary
    assert "FAILED: noisy_failure" in summary
    assert (tmp_path / "noisy_failure.log").read_text().splitlines()[-1] == "100"  # the whole output, in a file


def test_stages_that_all_pass_pass_the_check(tmp_path: Path) -> None:
    done = stages(tmp_path, "run_stage first true", "run_stage second echo ok")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all stages passed" in (tmp_path / "gpu_check.log").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path: only where there is none")
def test_the_whole_check_fails_on_a_machine_without_cuda(tmp_path: Path) -> None:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPT.parents[1],
        env={**os.environ, "PATH": path},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "torch sees no CUDA device" in (tmp_path / "gpu_check.log").read_text()


def test_an_unknown_test_accelerator_is_an_error_not_a_silent_cpu_run(monkeypatch) -> None:
    monkeypatch.setenv(accelerator.ENV, "tpu")
    with pytest.raises(ValueError, match="DEEPM3_TEST_ACCELERATOR"):
        accelerator.trainer_override()


def test_a_run_asked_for_the_gpu_that_left_cpu_weights_is_caught(tmp_path: Path, monkeypatch) -> None:
    """What proves that the check's training stage really trained on CUDA."""
    checkpoint = tmp_path / "best.ckpt"
    torch.save({"state_dict": {"net.weight": torch.zeros(2)}}, checkpoint)
    accelerator.check_checkpoint_device(checkpoint)  # asked for the CPU (the default): fine
    monkeypatch.setenv(accelerator.ENV, "gpu")
    with pytest.raises(AssertionError, match="not cuda"):
        accelerator.check_checkpoint_device(checkpoint)
