"""Benchmark: a bounded load run against ``python -m deepm3.serve`` on loopback (issue 17).

    python benchmarks/serve_load.py                                   # trains 4 tiny ML-100k runs first
    python benchmarks/serve_load.py --run deepm3-euler=outputs/runs/A --run deepm3-rk4=outputs/runs/B \\
        --run sasrec=outputs/runs/C --run gru4rec=outputs/runs/D --requests 2000 --clients 8

For each run it starts the server in a child process on a free 127.0.0.1 port, sends
``--requests`` ``POST /recommend`` requests from ``--clients`` concurrent aiohttp clients (each a
real test user's history -- the last ``max_len`` events before that user's test item, asked
at the test item's time), stops after ``--time-limit`` seconds whatever happens, and reports
p50/p95/p99 latency, requests/s and errors (the bar: zero). Then, on the DeepM3-euler server,
it posts the same users' histories to ``/events`` and compares the p50 of a known user's
request (stored state: one flow to ``at`` and a readout) with the full-window request, one
client at a time. ``--batching both`` also serves every run with ``batching=true`` (micro-
batching of concurrent requests) and reports those rows beside the default ones. The issue's
targets (on the default, unbatched servers) are printed as met or missed:

* DeepM3-euler p50 <= 0.6 x DeepM3-rk4 p50, and <= 2 x GRU4Rec p50;
* known-user p50 <= 1/10 of the full-window p50 (at max_len 200).

Without ``--run`` it trains each model for two batches of one epoch on ML-100k at
``--max-len`` (default 200) into ``--workdir`` (reused when already there): the weights are
untrained, the latency is not. Every server and client stays on this machine's loopback;
the load loops are bounded by count and time; servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # name -> training overrides (DeepM3 with the field docs/serving.md measured)
    "deepm3-euler": ["model=deepm3", "solver=euler", "model.net.field.kind=mlp"],
    "deepm3-rk4": ["model=deepm3", "solver=rk4", "model.net.field.kind=mlp"],
    "sasrec": ["model=sasrec"],
    "gru4rec": ["model=gru4rec"],
}
TINY_TRAINING = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=2",
    "++trainer.limit_val_batches=2",
    "++trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
]


def train(name: str, workdir: Path, max_len: int) -> Path:
    """A tiny run of ``name`` on ML-100k at ``max_len`` (reused when its metrics.json exists)."""
    from deepm3.run_dir import is_complete

    run_dir = workdir / f"{name}-L{max_len}"
    if is_complete(run_dir):
        return run_dir
    command = [
        sys.executable,
        "-m",
        "deepm3.train",
        *MODELS[name],
        f"dataset.max_len={max_len}",
        *TINY_TRAINING,
        f"hydra.run.dir={run_dir}",
    ]
    print(f"training {name} (tiny) -> {run_dir}", flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=_env())
    if done.returncode != 0:
        raise SystemExit(f"training {name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return run_dir


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def workload(run_dir: Path, users: int, seed: int = 0) -> list[dict[str, Any]]:
    """Test users' requests: the last ``max_len`` events before the test item, at its time."""
    from deepm3.data.processed import ProcessedData
    from deepm3.run_dir import config_max_len, read_config, read_metrics

    metrics = read_metrics(run_dir)
    data = ProcessedData.load(Path(metrics["data"]["data_dir"]))
    max_len = config_max_len(read_config(run_dir), run_dir)
    order = np.random.default_rng(seed).permutation(data.num_users)[:users]
    requests = []
    for user in order:
        start, end = int(data.offsets[user]), int(data.offsets[user + 1]) - 1  # end: the test item
        first = max(start, end - max_len)
        requests.append(
            {
                "user": str(data.user_ids[user]),
                "items": data.item_ids[data.items[first:end] - 1].tolist(),
                "timestamps": data.times[first:end].tolist(),
                "at": int(data.times[end]),
                "full_items": data.item_ids[data.items[start:end] - 1].tolist(),
                "full_times": data.times[start:end].tolist(),
            }
        )
    return requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``python -m deepm3.serve`` in a child process on a free loopback port; stopped on exit."""

    def __init__(self, run_dir: Path, threads: int, batching: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deepm3.serve",
                f"run={run_dir}",
                "host=127.0.0.1",
                f"port={self.port}",
                "device=cpu",
                f"threads={threads}",
                "state.snapshot=null",
                "log_level=warning",
                f"batching={'true' if batching else 'false'}",
            ],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def __enter__(self) -> "Server":
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited:\n{self.process.communicate()[0][-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.25)
        self.__exit__()
        raise SystemExit("server did not start within 180 s")

    def __exit__(self, *_: Any) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def load(
    url: str, bodies: list[dict[str, Any]], requests: int, clients: int, time_limit: float, warmup: int = 20
) -> dict[str, Any]:
    """``requests`` POST /recommend (cycling through ``bodies``) from ``clients`` tasks, bounded by time.

    aiohttp, not httpx: on a loaded 2-core machine httpx's own overhead (~2-6 ms a request)
    would be measured instead of the server's.
    """
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    payloads = [json.dumps(body).encode() for body in bodies]
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout, headers=headers) as client:
        for payload in payloads[:warmup]:  # first calls pay one-off costs (allocator, caches)
            async with client.post("/recommend", data=payload) as response:
                await response.read()
        deadline = time.monotonic() + time_limit

        async def worker() -> None:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                start = time.perf_counter()
                try:
                    async with client.post("/recommend", data=payloads[i % len(payloads)]) as response:
                        text = await response.text()
                        if response.status != 200:
                            errors.append(f"{response.status}: {text[:200]}")
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "rps": len(latencies) / wall,
        "seconds": wall,
        "timed_out": len(latencies) < requests,
    }


def stored_vs_window(server: Server, users: list[dict[str, Any]], requests: int, time_limit: float) -> dict[str, Any]:
    """p50 of a known user's request vs the same user's full-window request, one client."""
    import httpx

    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        for user in users:
            events = {"user": user["user"], "items": user["full_items"], "timestamps": user["full_times"]}
            response = client.post("/events", json=events)
            if response.status_code != 200:
                raise SystemExit(f"/events failed: {response.text}")
    stored = [{"user": u["user"], "at": u["at"], "k": 10} for u in users]
    window = [{"items": u["items"], "timestamps": u["timestamps"], "at": u["at"], "k": 10} for u in users]
    return {
        "stored": asyncio.run(load(server.url, stored, requests, 1, time_limit)),
        "window": asyncio.run(load(server.url, window, requests, 1, time_limit)),
        "window_events": int(np.median([len(u["items"]) for u in users])),
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help=f"a run dir per model; names: {', '.join(MODELS)} (default: train tiny ones)",
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per load run (it stops there)")
    parser.add_argument("--users", type=int, default=200, help="distinct test users the requests cycle through")
    parser.add_argument("--stored-requests", type=int, default=200, help="requests per path in the stored-state check")
    parser.add_argument("--max-len", type=int, default=200, help="window of the runs trained here")
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "serve_load")
    parser.add_argument("--server-threads", type=int, default=1, help="torch threads in each server")
    parser.add_argument(
        "--batching",
        choices=["off", "on", "both"],
        default="off",
        help="serve with batching=false, true, or each run both ways",
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if not (0 < args.requests <= 100_000 and 0 < args.clients <= 64 and 0 < args.time_limit <= 3600):
        parser.error("keep it bounded: 0 < requests <= 100000, 0 < clients <= 64, 0 < time-limit <= 3600")

    given = dict(item.split("=", 1) for item in args.run)
    unknown = set(given) - set(MODELS)
    if unknown:
        parser.error(f"unknown model name(s) {sorted(unknown)}; expected {list(MODELS)}")
    runs = {name: Path(given[name]) if name in given else train(name, args.workdir, args.max_len) for name in MODELS}
    results: dict[str, Any] = {"models": {}, "batched": {}, "requests": args.requests, "clients": args.clients}
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.batching]
    for name, run_dir in runs.items():
        bodies = [{key: r[key] for key in ("items", "timestamps", "at")} for r in workload(run_dir, args.users)]
        for batching in modes:
            with Server(run_dir, args.server_threads, batching) as server:
                stats = asyncio.run(load(server.url, bodies, args.requests, args.clients, args.time_limit))
                import httpx

                stats["max_len"] = httpx.get(f"{server.url}/model").json()["max_len"]
                if name == "deepm3-euler" and batching == modes[0]:
                    users = [u for u in workload(run_dir, 10_000) if len(u["items"]) >= stats["max_len"]][: args.users]
                    results["stored_state"] = stored_vs_window(server, users, args.stored_requests, args.time_limit)
            results["batched" if batching else "models"][name] = stats
            label = f"{name}{' +batching' if batching else ''}"
            print(
                f"{label:23s} p50 {stats['p50_ms']:7.2f} ms  p95 {stats['p95_ms']:7.2f}  p99 {stats['p99_ms']:7.2f}  "
                f"{stats['rps']:7.1f} req/s  {stats['requests']} requests  {stats['errors']} errors",
                flush=True,
            )

    print("\n| model | batching | max_len | requests | clients | p50 ms | p95 ms | p99 ms | req/s | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, batching in (("models", "off"), ("batched", "on")):
        for name, s in results[key].items():
            print(
                f"| {name} | {batching} | {s['max_len']} | {s['requests']} | {args.clients} | {s['p50_ms']:.2f} | "
                f"{s['p95_ms']:.2f} | {s['p99_ms']:.2f} | {s['rps']:.1f} | {s['errors']} |"
            )
    models = results["models"] or results["batched"]
    all_rows = [*results["models"].values(), *results["batched"].values()]
    euler, rk4, gru = (models[n]["p50_ms"] for n in ("deepm3-euler", "deepm3-rk4", "gru4rec"))
    stored = results.get("stored_state")
    checks = {
        "DeepM3-euler p50 <= 0.6 x DeepM3-rk4 p50": (euler / rk4, euler <= 0.6 * rk4),
        "DeepM3-euler p50 <= 2 x GRU4Rec p50": (euler / gru, euler <= 2 * gru),
        "zero errors": (sum(s["errors"] for s in all_rows), all(s["errors"] == 0 for s in all_rows)),
    }
    if stored:
        ratio = stored["stored"]["p50_ms"] / stored["window"]["p50_ms"]
        print(
            f"\nknown user (stored state) p50 {stored['stored']['p50_ms']:.2f} ms vs full window "
            f"({stored['window_events']} events) p50 {stored['window']['p50_ms']:.2f} ms, one client, "
            f"{stored['stored']['requests']} requests each"
        )
        checks["known-user p50 <= 1/10 of the full-window p50"] = (ratio, ratio <= 0.1)
    print()
    for label, (value, ok) in checks.items():
        print(f"{label}: {value:.3g} -> {verdict(ok)}")
    results["checks"] = {label: {"value": value, "met": ok} for label, (value, ok) in checks.items()}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
