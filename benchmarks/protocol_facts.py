"""Measure the facts docs/protocol.md states: query gaps on ML-100k, repeat targets and a history
scorer under each ranking rule on the synthetic world.  Run: python benchmarks/protocol_facts.py
"""

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from deepm3.metrics import ranking_metrics, repeat_targets, target_ranks
from deepm3.models.components.repeat import RepeatNet
from deepm3.phase2.train_all import CONF_DIR


def dm(*ov):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=list(ov))
    return instantiate(cfg.dataset, _convert_="all")


d = dm("dataset=ml100k")
d.setup()
t = d.splits["test"]
q = t.next_times[:, -1] - t.times[:, -1]
print(f"ml100k default: test query gap 0: {np.mean(q == 0):.3f}, < 1 h: {np.mean(q < 3600):.3f}, users {len(q)}")
d = dm("dataset=ml100k", "experiment=peer_ml100k")
d.setup()
t = d.splits["test"]
q = t.next_times[:, -1] - t.times[:, -1]
print(f"ml100k peer: test query gap 0: {np.mean(q == 0):.3f}, < 1 h: {np.mean(q < 3600):.3f}, users {len(q)}")
s = dm("dataset=synthetic")
s.setup()
net = RepeatNet(s.num_items)
out = {"old": [], "all": [], "novel": []}
rep = []
for b in s.test_dataloader():
    sc = net.predict(b)
    tg = b["targets"][:, -1]
    r = repeat_targets(tg, b["history_rows"], b["history_items"])
    rep.append(r)
    out["old"].append(target_ranks(sc, tg, b["history_rows"], b["history_items"]))
    out["all"].append(target_ranks(sc, tg))
    keep = (~r)[b["history_rows"]]
    out["novel"].append(target_ranks(sc, tg, b["history_rows"][keep], b["history_items"][keep])[~r])
rep = torch.cat(rep)
print(f"synthetic: users {len(rep)}, repeat share {rep.float().mean():.3f}")
for k, v in out.items():
    print(k, f"ndcg@10 {ranking_metrics(torch.cat(v), (10,))['ndcg@10'].mean():.4f}")
