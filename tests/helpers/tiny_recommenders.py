"""Tiny in-memory recommenders with random weights (DeepM3, GRU4Rec and two time-aware baselines
over 12 items) and the histories and queries the serving tests send them."""

from __future__ import annotations

import numpy as np
import torch

from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.gru4rec import GRU4RecNet
from deepm3.models.components.gru_dt import GRUDtNet
from deepm3.models.components.tisasrec import TiSASRecNet
from deepm3.recommender import Recommender

N = 12
MAX_LEN = 4
ITEM_IDS = [f"i{i:02d}" for i in range(N)]
DAY = 86_400


def recommender(net: torch.nn.Module, query: str = "target") -> Recommender:
    return Recommender(net, ITEM_IDS, max_len=MAX_LEN, popularity=np.arange(N + 1), device="cpu", query=query)


def next_times_reader(kind: str, query: str) -> Recommender:
    """A network that reads ``next_times`` (the query moment), with random weights."""
    torch.manual_seed(0)
    if kind == "gru_dt":
        net = GRUDtNet(N, hidden=8, gru_hidden=8, dropout=0.0, gap_features=4, time={"query": query})
    else:
        net = TiSASRecNet(N, hidden=8, blocks=1, heads=1, dropout=0.0, max_len=MAX_LEN, clip=64)
    return recommender(net, query)


ITEMS = ["i03", "i07", "i01", "i09"]
TIMES = [1_600_000_000, 1_600_000_060, 1_600_003_600, 1_600_090_000]


def deepm3_net() -> DeepM3Net:
    torch.manual_seed(0)
    return DeepM3Net(
        N, hidden=8, dropout=0.0, field={"width": 8, "zero_init": False}, solver={"method": "rk4", "steps": 1}
    )


def gru_net() -> GRU4RecNet:
    torch.manual_seed(0)
    return GRU4RecNet(N, hidden=8, gru_hidden=8, dropout=0.0)


USERS = {
    "a": (["i00", "i01", "i02"], [100, 200, 300]),
    "b": (["i05", "i06"], [150, 5_000]),
    "c": (["i10", "i11", "i03", "i04", "i08"], [10, 20, 30, 40, 50]),
}


MIXED = [  # users who differ in k and exclude_seen, in an order that interleaves the groups
    {"user": "a", "at": 10_000, "k": 3},
    {"user": "b", "at": 10_000, "k": 7, "exclude_seen": False},
    {"user": "c", "at": 10_000, "k": 3, "exclude_seen": False},
    {"user": "a", "at": 20_000, "k": 5},
    {"user": "b", "at": 10_000, "k": 3},
]


QUERY = {"items": ITEMS, "timestamps": TIMES, "at": TIMES[-1] + 60, "k": 3}
KEY = "s3cret-key"
