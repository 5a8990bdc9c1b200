import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from colorsr_cli.distributed import Shard, take_shard

from .conftest import photo_like


def test_shards_are_disjoint_and_cover():
    items = list(range(23))
    parts = [take_shard(items, Shard(r, 4)) for r in range(4)]
    assert sorted(x for p in parts for x in p) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.slow
def test_torchrun_two_gloo_processes_restore_each_image_once(tiny_weights, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(10):
        Image.fromarray(photo_like(24, 32, k, gray=True)).save(src / f"img{k:02d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "colorsr_cli", "restore", str(src), "--out", str(out), "--json", "--device", "cpu",
           "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["done"] == 10 and summary["failed"] == 0 and summary["skipped"] == 0
    assert sorted(p.name for p in out.iterdir()) == [f"img{k:02d}.png" for k in range(10)]
    assert len(summary["outputs"]) == len(set(summary["outputs"])) == 10
    # Resumable: a rerun finds everything done.
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert json.loads(r.stdout[r.stdout.index("{"):])["skipped"] == 10


@pytest.mark.slow
def test_torchrun_ranks_never_write_the_same_output(tiny_weights, tmp_path):
    """dup.jpg and dup.png both map to dup.png with --ext png; round-robin puts them on different
    ranks, which alone could not see the collision."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo_like(24, 32, 1, gray=True)).save(src / "dup.jpg")
    Image.fromarray(photo_like(24, 32, 2, gray=True)).save(src / "dup.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "colorsr_cli", "restore", str(src), "--out", str(out), "--ext", "png", "--json",
           "--device", "cpu", "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1])]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       timeout=300)
    assert r.returncode == 1, r.stderr[-3000:]  # one failure
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["done"] == 1 and summary["failed"] == 1
    assert "same output as" in r.stderr and sorted(p.name for p in out.iterdir()) == ["dup.png"]
