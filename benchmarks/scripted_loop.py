"""Batch-1 inference latency of DeepM3's window loop, TorchScript vs eager, per flow
(``field.kind`` mlp and decay), at the ML-1M shape. Both paths in one process, so the ratio
holds on a loaded machine. Run: OMP_NUM_THREADS=1 python benchmarks/scripted_loop.py
"""

import argparse
import dataclasses
import time

import torch

from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.event_loop import EagerLoop


def median_ms(net: DeepM3Net, inputs: tuple[torch.Tensor, ...], calls: int, warmup: int = 5) -> float:
    with torch.no_grad():
        for _ in range(warmup):
            net(*inputs)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            net(*inputs)
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3416)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    items = torch.randint(1, args.items, (1, args.max_len))
    times = torch.cumsum(torch.randint(60, 86_400, (1, args.max_len)), dim=1)
    inputs = (items, times, torch.cat([times[:, 1:], times[:, -1:] + 3600], dim=1))
    print("| field.kind | solver | scripted ms | eager ms | scripted / eager |\n|---|---|---:|---:|---:|")
    for kind in ("mlp", "decay"):
        for method in ("euler", "rk4"):
            net = DeepM3Net(
                args.items,
                hidden=args.hidden,
                dropout=0.0,
                field={"kind": kind, "zero_init": False},
                solver={"method": method, "steps": 1},
            ).eval()
            assert net.event_loops.inference.name == "scripted", f"{kind}/{method} has no scripted loop"
            fast = median_ms(net, inputs, args.calls)
            net.event_loops = dataclasses.replace(net.event_loops, inference=EagerLoop(net))
            slow = median_ms(net, inputs, args.calls)
            print(f"| {kind} | {method} | {fast:.2f} | {slow:.2f} | {fast / slow:.2f} |")


if __name__ == "__main__":
    main()
