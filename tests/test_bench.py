"""`python -m deepm3.bench` end to end on tiny shapes: a table, JSON and target checks."""

import json
import subprocess
import sys
from pathlib import Path

from deepm3.bench import check_targets, format_table


def test_bench_writes_json_and_markdown_for_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "deepm3.bench",
        "device=cpu",
        "threads=1",
        "hidden=8",
        "~sizes.ml1m",
        "~sizes.ml100k",
        "+sizes.tiny={num_items:40,max_len:6,num_users:30}",
        "~presets",
        "batch_size=8",
        "train_warmup=1",
        "train_steps=2",
        "latency_warmup=1",
        "latency_calls=3",
        "throughput_batches=1",
        "measure_memory=false",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["results"]["tiny"]
    assert set(rows) == {"deepm3-euler", "deepm3-rk4", "deepm3-none", "sasrec", "tisasrec", "gru4rec"}
    for row in rows.values():
        assert row["params"] > 0 and row["train_step_ms"] > 0 and row["latency_ms"] > 0
        assert row["throughput_users_s"] > 0 and row["eval_pass_s"] > 0
    assert report["device"].startswith("CPU")
    assert "| tiny | deepm3-euler |" in out.with_suffix(".md").read_text()
    assert "| tiny | deepm3-rk4 |" in done.stdout


def test_targets_compare_ratios_within_one_size() -> None:
    results = {
        "ml1m": {
            "deepm3-euler": {"latency_ms": 4.0, "train_step_ms": 14.0, "eval_pass_s": 2.0},
            "deepm3-rk4": {"latency_ms": 10.0, "train_step_ms": 30.0},
            "deepm3-none": {"latency_ms": 3.0, "train_step_ms": 10.0},
        }
    }
    checks = check_targets(results)
    assert checks["euler latency <= 0.5 x rk4 latency (ml1m)"] == {"ratio": 0.4, "limit": 0.5, "ok": True}
    assert checks["euler train step <= 1.5 x none train step (ml1m)"]["ok"] is True
    assert any("eval pass" in label and v["ok"] for label, v in checks.items())
    results["ml1m"]["deepm3-euler"]["latency_ms"] = 6.0
    assert check_targets(results)["euler latency <= 0.5 x rk4 latency (ml1m)"]["ok"] is False


def test_table_names_the_device() -> None:
    table = format_table({"s": {"m": {"params": 1234, "latency_ms": 1.5}}}, "CPU test")
    assert table.splitlines()[0] == "Device: CPU test"
    assert "| s | m | 1,234 |" in table


def test_eval_pass_target_is_checked_for_the_default_preset_too() -> None:
    results = {"ml1m": {"deepm3-euler": {"eval_pass_s": 2.0}, "deepm3-euler@preset": {"eval_pass_s": 6.0}}}
    checks = check_targets(results)
    assert checks["ml1m full-ranking eval pass < 5.0 s (deepm3-euler)"]["ok"] is True
    assert checks["ml1m full-ranking eval pass < 5.0 s (deepm3-euler@preset)"]["ok"] is False
