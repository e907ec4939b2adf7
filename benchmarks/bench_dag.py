"""Scale benchmark: the workflow's DAG over a 13,320-video UCF101-shaped dataset.

Placeholder (empty) video files in UCF101's exact layout and split sizes: 101 classes,
25 groups of 4-7 clips, three splits. Measures the manifest job, then the dry run of the
whole workflow (DAG build and job count), without and with the dense stage (``dense:
{every_s: 1.0}``, one more job a shard). Goal: each dry run in under 60 s on 2 cores.

Usage: python benchmarks/bench_dag.py [--shards 52]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import yaml

from moclip.workflow import runner

REPO = Path(__file__).resolve().parents[1]
N_VIDEOS = 13_320


def make_placeholder_ucf101(root: Path) -> tuple[Path, Path]:
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    classes = [f"Action{i:03d}" for i in range(101)]
    clips = [4 + (i * 7 + g * 3) % 4 for i in range(101) for g in range(25)]  # 4..7 clips a group
    extra = N_VIDEOS - sum(clips)
    for j in range(abs(extra)):  # top up (or trim) to exactly 13,320 clips
        clips[j * 7 % len(clips)] += 1 if extra > 0 else -1
    eol = "\r\n"
    (lists / "classInd.txt").write_text("".join(f"{i} {c}{eol}" for i, c in enumerate(classes, 1)), newline="")
    entries = []
    for i, c in enumerate(classes):
        (videos / c).mkdir(parents=True)
        for g in range(1, 26):
            for k in range(1, clips[i * 25 + g - 1] + 1):
                name = f"v_{c}_g{g:02d}_c{k:02d}.avi"
                (videos / c / name).write_bytes(b"")
                entries.append((c, i + 1, g, f"{c}/{name}"))
    for s, test in ((1, range(1, 8)), (2, range(8, 15)), (3, range(15, 22))):
        tr = "".join(f"{rel} {lab}{eol}" for c, lab, g, rel in entries if g not in test)
        te = "".join(f"{rel}{eol}" for c, lab, g, rel in entries if g in test)
        (lists / f"trainlist0{s}.txt").write_text(tr, newline="")
        (lists / f"testlist0{s}.txt").write_text(te, newline="")
    assert len(entries) == N_VIDEOS
    return videos, lists


def snakemake(wd: Path, cfg: Path, *args: str) -> tuple[float, str]:
    """Wall seconds of one run on 2 cores, and what it printed."""
    t = time.perf_counter()
    out = runner.run(wd, cfg, *args, cores=2)
    return time.perf_counter() - t, out.stdout + out.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=52)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        videos, lists = make_placeholder_ucf101(root / "data")
        print(f"# {N_VIDEOS} placeholder videos in UCF101's layout ({time.perf_counter() - t:.1f} s to make)")
        cfg = root / "config.yaml"
        dataset = {"dataset": {"videos": str(videos), "lists": str(lists), "shards": a.shards, "val_groups": 3}}
        cfg.write_text(yaml.safe_dump(dataset))
        cfg_dense = root / "config-dense.yaml"
        cfg_dense.write_text(yaml.safe_dump({**dataset, "dense": {"every_s": 1.0}}))
        wd = root / "run"
        t_manifest, _ = snakemake(wd, cfg, "manifest", "--quiet", "all")
        t_dry, out = snakemake(wd, cfg, "-n", "--quiet", "rules")
        total = re.search(r"^total\s+(\d+)", out, re.M)
        print(f"manifest job (13,320 rows, 3 splits)   {t_manifest:6.1f} s")
        print(f"dry run of the whole workflow          {t_dry:6.1f} s   (goal < 60 s)")
        print(f"jobs in the DAG                        {total.group(1) if total else '?':>6}   ({a.shards} shards)")
        stats = out[out.find("Job stats:") :]
        print(stats[: stats.find("total")].strip())
        t_dense, out = snakemake(wd, cfg_dense, "-n", "--quiet", "rules")
        total = re.search(r"^total\s+(\d+)", out, re.M)
        dense = re.search(r"^dense\s+(\d+)", out, re.M)
        print(f"dry run with dense: {{every_s: 1.0}}     {t_dense:6.1f} s   (goal < 60 s)")
        print(
            f"jobs in the DAG with dense            {total.group(1) if total else '?':>6}   "
            f"({dense.group(1) if dense else 0} dense jobs)"
        )
        t_slurm, out = snakemake(
            wd, cfg, "-n", "--workflow-profile", str(REPO / "profiles" / "slurm"), "--jobs", "100", "--quiet", "rules"
        )
        jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}
        local = {"all", "caches", "embeddings", "cache_failures"}
        n_sbatch = sum(n for r, n in jobs.items() if r != "total" and r not in local)
        print(
            f"sbatch submissions under profiles/slurm {n_sbatch:5d}   (dry run {t_slurm:.1f} s; local rules: "
            f"{', '.join(sorted(local & set(jobs)))})"
        )


if __name__ == "__main__":
    main()
