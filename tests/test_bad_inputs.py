"""Every bad input of issue 14 through the real command lines: exit status 1, one line on stderr
naming the bad key, field or value, no traceback, and nothing on disk lost or changed.

The probes run in ONE extra process (``tests/helpers/cli_probe.py``), which calls the Hydra ``main()``
of ``deepm3.train`` / ``deepm3.recommend`` once per probe exactly as ``python -m`` would, so
torch, Lightning and Hydra are imported once. As root it runs without the capabilities that
bypass file permissions, so read-only folders are read-only for it. One probe also goes
through a real ``python -m deepm3.recommend`` process.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers.serve_fixtures import train_tiny
from tests.helpers.tiny_runs import FAST_TRAINER, tiny_dataset, tiny_run

REPO_ROOT = Path(__file__).resolve().parents[1]
NET = ["model.net.hidden=16", "model.net.field.width=16"]
BIG = "99999999999999999999"
# What Lightning itself prints on stderr for every run, bad or good: information, not an error.
LIGHTNING_INFO = re.compile(r"^Seed set to \d+$")


def _without_permission_override() -> None:  # pragma: no cover - runs in the child
    """Drop CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from the bounding set before exec:
    root then obeys file modes like any user (Linux; a no-op need for other users)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }


# -- the world the probes run against -------------------------------------------------------------


def _zip_with_symlink(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        link = zipfile.ZipInfo("ml-1m")
        link.create_system, link.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc")
        zf.writestr("ml-1m/ratings.dat", "1::1::5::978300760\n")


def _interactions(path: Path, rows: list[tuple], columns=("user_id", "item_id", "timestamp")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def build_world(w: Path) -> dict:
    """Trained runs, a built cache, input files, read-only folders; and the probes against them."""
    data = w / "data"
    tiny = w / "tiny-run"
    tiny_run(tiny, data, *NET)  # builds TinySource's cache: the train probes only read it
    serve = train_tiny(w / "serve", *NET)  # ServeSource, 20 items too (other raw ids)
    inputs = w / "inputs"
    inputs.mkdir()
    items, times, _, _ = serve.history(0)
    good = inputs / "good.csv"
    pd.DataFrame({"user": "u1", "item": items, "timestamp": times}).to_csv(good, index=False)
    (inputs / "latin1.csv").write_bytes("user,item,timestamp\nJosé,sku-003,100\n".encode("latin-1"))
    (inputs / "big-time.csv").write_text(f"user,item,timestamp\nu1,{items[0]},100\nu1,{items[1]},{BIG}\n")
    (inputs / "negative.csv").write_text(f"user,item,timestamp\nu1,{items[0]},-5\n")
    (inputs / "link.csv").symlink_to(good)
    checkpoint = next((serve.run_dir / "checkpoints").glob("best-*.ckpt"))
    cut = inputs / "cut.ckpt"
    cut.write_bytes(checkpoint.read_bytes()[:4000])
    (inputs / "foreign.ckpt").write_bytes(b"not a checkpoint at all\n")
    torch.save({"state_dict": {}, "weights": [1, 2]}, inputs / "other.ckpt")  # a torch file, not a training checkpoint
    # ServeSource's run dir with another dataset's item map (same count: only the ids differ)
    foreign_run = Path(shutil.copytree(serve.run_dir, w / "foreign-run"))
    other = [f"other-{i:02d}" for i in range(20)]
    pd.DataFrame({"index": range(1, 21), "raw_id": other}).to_csv(foreign_run / "item_map.csv", index=False)
    popularity = pd.read_csv(foreign_run / "item_popularity.csv")
    popularity.assign(raw_id=other).to_csv(foreign_run / "item_popularity.csv", index=False)
    # a run dir whose checkpoint names a module that prints the Zen of Python when imported
    zen_run = Path(shutil.copytree(serve.run_dir, w / "zen-run"))
    for path in (zen_run / "checkpoints").glob("*.ckpt"):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        saved["hyper_parameters"]["net"]["_target_"] = "this.Zen"
        torch.save(saved, path)
    files = w / "files"
    _interactions(files / "big.csv", [("a", "x", 100), ("a", "y", 200), ("a", "z", "10000000000000000000")])
    _interactions(files / "huge.csv", [("a", "x", 100), ("a", "y", BIG)])
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(
        pa.table({"user_id": ["a", None, "c"], "item_id": ["x", "y", "z"], "timestamp": [1, 2, 3]}),
        files / "null-user.parquet",
    )
    pq.write_table(
        pa.table({"user_id": ["a", "b", "c"], "item_id": [1.0, 2.0, 3.0], "timestamp": [1, 2, 3]}),
        files / "float-items.parquet",
    )
    pq.write_table(
        pa.table({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "timestamp": [True, False, True]}),
        files / "bool-times.parquet",
    )
    _zip_with_symlink(w / "ml1m-raw" / "ml-1m.zip")
    recs = w / "recs"
    recs.mkdir()
    (recs / "folder.csv").mkdir()
    locked = recs / "locked.csv"
    locked.write_text("user,rank,item,score,source\n")
    locked.chmod(0o444)
    read_only = {name: w / name for name in ("ro-out", "ro-cache", "ro-recs")}
    for folder in read_only.values():
        folder.mkdir()

    train_base = [*FAST_TRAINER, *NET, *tiny_dataset(data)]
    train_watch = [str(data), str(inputs), str(tiny), str(serve.run_dir), str(w / "runs")]

    def train(probe: str, *args: str, base: list[str] = train_base, output: Path | None = None) -> dict:
        output = output or w / "runs" / probe
        return {
            "id": probe,
            "module": "deepm3.train",
            "watch": train_watch,
            "args": [*base, f"hydra.run.dir={w / 'hydra' / probe}", f"paths.output_dir={output}", *args],
        }

    def interactions(probe: str, path: Path, *args: str) -> dict:
        base = [
            *FAST_TRAINER,
            *NET,
            "dataset=interactions",
            f"dataset.source.path={path}",
            f"paths.data_dir={w / 'data-i'}",
        ]
        return train(probe, *args, base=base)

    def recommend(probe: str, **options: str) -> dict:
        args = {
            "run": str(serve.run_dir),
            "input": str(good),
            "output": str(recs / f"{probe}.csv"),
            "device": "cpu",
            "progress": "false",
            **options,
        }
        return {
            "id": probe,
            "module": "deepm3.recommend",
            "args": [f"{k}={v}" for k, v in args.items()],
            "watch": [str(serve.run_dir), str(inputs), str(recs), str(foreign_run), str(zen_run)],
        }

    probes = [
        # (probe, expected words on the one error line)
        (train("lr-negative", "optim.lr=-1"), ["optim.lr=-1"]),
        (train("lr-text", "optim.lr=abc"), ["optim.lr='abc'"]),
        (train("user-core-text", "dataset.user_core=abc"), ["dataset.user_core='abc'"]),
        (train("hidden-zero", "model.net.hidden=0"), ["model.net.hidden=0"]),
        (train("dropout-two", "model.net.dropout=2"), ["model.net.dropout=2"]),
        (train("resume-truncated", f"ckpt_path={cut}"), [f"ckpt_path={cut}", "truncated"]),
        (train("resume-foreign-dataset", f"ckpt_path={checkpoint}"), ["ckpt_path=", "another dataset"]),
        (
            train("resume-not-a-checkpoint", f"ckpt_path={inputs / 'other.ckpt'}"),
            ["other.ckpt", "not a deepm3 training checkpoint"],
        ),
        (
            train("resume-not-torch", f"ckpt_path={inputs / 'foreign.ckpt'}"),
            ["foreign.ckpt", "not a loadable checkpoint"],
        ),
        (train("read-only-output", output=read_only["ro-out"] / "run"), ["paths.output_dir=", "ro-out", "read-only"]),
        (train("read-only-cache", f"dataset.cache_dir={read_only['ro-cache']}"), ["ro-cache", "cannot write"]),
        (interactions("missing-file", w / "files" / "interactions"), ["interactions: file not found"]),
        (
            interactions("timestamp-1e19", files / "big.csv"),
            ["big.csv: line 4: field 'timestamp' = '10000000000000000000'"],
        ),
        (interactions("file-timestamp-huge", files / "huge.csv"), [f"huge.csv: line 3: field 'timestamp' = '{BIG}'"]),
        (
            interactions("parquet-null-user", files / "null-user.parquet"),
            ["null-user.parquet: row 1: field 'user_id' is empty"],
        ),
        (interactions("parquet-float-items", files / "float-items.parquet"), ["column 'item_id' holds double values"]),
        (interactions("parquet-bool-times", files / "bool-times.parquet"), ["column 'timestamp' holds bool values"]),
        (
            train(
                "zip-symlink",
                "dataset=ml1m",
                f"dataset.source.raw_dir={w / 'ml1m-raw'}",
                "dataset.source.download=false",
                "dataset.source.checksum=null",
                base=[*FAST_TRAINER, *NET, f"paths.data_dir={w / 'data-z'}"],
            ),
            ["member 'ml-1m' is a symbolic link"],
        ),
        (recommend("output-is-input", output=str(good)), [f"output={good} is the input file"]),
        (recommend("output-links-to-input", output=str(inputs / "link.csv")), ["link.csv is the input file"]),
        (recommend("batch-size-text", batch_size="abc"), ["batch_size='abc'"]),
        (recommend("k-zero", k="0"), ["k=0"]),
        (recommend("exclude-seen-maybe", exclude_seen="maybe"), ["exclude_seen='maybe'"]),
        (recommend("non-utf8-input", input=str(inputs / "latin1.csv")), ["latin1.csv: not UTF-8"]),
        (recommend("output-is-folder", output=str(recs / "folder.csv")), ["folder.csv is a folder"]),
        (recommend("output-read-only-file", output=str(locked)), ["locked.csv is read-only"]),
        (
            recommend("output-in-read-only-folder", output=str(read_only["ro-recs"] / "recs.csv")),
            ["ro-recs", "cannot write"],
        ),
        (recommend("at-huge", at=BIG), [f"at={BIG}", "out of range"]),
        (recommend("timestamp-huge", input=str(inputs / "big-time.csv")), ["big-time.csv line 3", BIG, "out of range"]),
        (
            recommend("timestamp-negative", input=str(inputs / "negative.csv")),
            ["negative.csv line 2", "'-5'", "out of range"],
        ),
        (recommend("foreign-item-map", run=str(foreign_run)), ["another dataset"]),
        (recommend("target-this", run=str(zen_run)), ["'this.Zen' is not a SequentialRecommender"]),
    ]
    if not torch.cuda.is_available():
        probes.append((recommend("device-cuda-without-gpu", device="cuda"), ["device='cuda'", "no such CUDA device"]))
    probes.append((recommend("device-nonsense", device="gpu0"), ["device='gpu0'"]))
    return {"probes": probes, "read_only": read_only, "good": good}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    w = tmp_path_factory.mktemp("bad-inputs")
    world = build_world(w)
    (w / "probes.json").write_text(json.dumps([probe for probe, _ in world["probes"]]))
    for folder in world["read_only"].values():
        folder.chmod(0o555)
    preexec = _without_permission_override if os.name == "posix" and os.geteuid() == 0 else None
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.helpers.cli_probe", str(w / "probes.json"), str(w / "results.json")],
            cwd=w,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
            preexec_fn=preexec,
        )
    finally:
        for folder in world["read_only"].values():
            folder.chmod(0o755)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((w / "results.json").read_text())
    return {
        "results": results,
        "expected": {probe["id"]: words for probe, words in world["probes"]},
        "read_only": world["read_only"],
    }


PROBES = [
    "lr-negative",
    "lr-text",
    "user-core-text",
    "hidden-zero",
    "dropout-two",
    "resume-truncated",
    "resume-foreign-dataset",
    "resume-not-a-checkpoint",
    "resume-not-torch",
    "read-only-output",
    "read-only-cache",
    "missing-file",
    "timestamp-1e19",
    "file-timestamp-huge",
    "parquet-null-user",
    "parquet-float-items",
    "parquet-bool-times",
    "zip-symlink",
    "output-is-input",
    "output-links-to-input",
    "batch-size-text",
    "k-zero",
    "exclude-seen-maybe",
    "non-utf8-input",
    "output-is-folder",
    "output-read-only-file",
    "output-in-read-only-folder",
    "at-huge",
    "timestamp-huge",
    "timestamp-negative",
    "foreign-item-map",
    "target-this",
    "device-cuda-without-gpu",
    "device-nonsense",
]


@pytest.mark.parametrize("probe", PROBES)
def test_a_bad_input_is_one_line_exit_1_and_changes_nothing(outcomes: dict, probe: str) -> None:
    if probe not in outcomes["expected"]:
        pytest.skip("a CUDA device is present")
    result = outcomes["results"][probe]
    stderr = result["stderr"]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert result["code"] == 1, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip() and not LIGHTNING_INFO.search(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for words in outcomes["expected"][probe]:
        assert words in lines[0], lines[0]
    assert result["changed"] == [], f"changed on disk: {result['changed']}"


def test_the_read_only_folders_stayed_empty(outcomes: dict) -> None:
    for folder in outcomes["read_only"].values():
        assert list(folder.iterdir()) == []


def test_every_probe_of_the_table_ran(outcomes: dict) -> None:
    assert len(PROBES) == len(set(PROBES)) and set(outcomes["expected"]) <= set(PROBES)
    assert len(outcomes["results"]) == len(outcomes["expected"])  # ids are unique: no probe hid another


def test_a_real_recommend_process_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("user,item,timestamp\nu1,sku-003,100\n")
    done = subprocess.run(
        [sys.executable, "-m", "deepm3.recommend", f"run={tmp_path / 'run'}", "input=x.csv", "output=x.csv"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: output=x.csv is the input file ({source}); writing there "
        "would replace the histories with the recommendations: choose "
        "another output path"
    ]
    assert source.read_text() == "user,item,timestamp\nu1,sku-003,100\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]
