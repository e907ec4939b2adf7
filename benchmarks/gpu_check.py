"""The prepared check of the GPU path, one command (``make gpu-check``) for a lent GPU.

Each part runs on its own (a part that fails or passes its time box is recorded with its
error and the others still run; the JSON is rewritten after each part, so a run cut short
keeps what it measured). Two plans (``--plan``); ``--parts`` reruns chosen parts.

``full`` (the default): the full-size run, about 8 minutes on an H100, each part
time-boxed (``FullSizes.budget_s``) and a part that would start past ``--budget-s`` (480)
skipped, so that the whole fits twice in 15 minutes of a lent card with its start-up:

- ``full_set``: a UCF101-sized synthetic set (13,320 videos, 340x256, GOP 12, camera-like
  dense motion, 8 JPEG frames) made on the machine's cores, kept in the temp dir and
  reused by a rerun on the same machine (``--set-dir``).
- ``full_clip``: CLIP (ViT-B-32) over every video in one stage call a loader setting,
  steady-state images/s against bare ``encode_image`` at batch 512; the stage's
  embeddings against a serialised decode and encode (a decode/encode race would show).
- ``nvjpeg``: the card's JPEG decode against the CPU's: grey levels, CLIP cosine, speed.
- ``full_mv_train``: split 1 for 2 epochs with the paper preset's loader (the workflow's
  workers), validation every epoch: segments/s, data wait.
- ``bare_mv``: the MV network's bare training step and feature pass on inputs on the card.
- ``full_mv_features``: both presets' test views, and the paper's draws.
- ``full_heads``: each head's epoch at split 1's size (on the CPU, as the workflow).
- ``concurrent``: three trainings on the card at once against one: aggregate segments/s.
- ``deterministic``: the bare step with the deterministic settings on and off.
- ``compile``: the library's bare step eager and under ``torch.compile``, compile time beside.

Then ``full_projection``: UCF101's three splits for config/ucf101.yaml and the paper preset
from these rates alone, every stage counted (printed and in the JSON with the goals).

``demo``: the earlier check: the demo workflow on the card against the CPU (``demo``),
float16 and determinism (``fp16``), the CLIP stage in rounds (``clip``), MV training and
features at several worker counts (``mv_train``, ``mv_features``), each GPU stage's
start-up in a fresh process (``startup``).

Without CUDA it runs the same code as a CPU rehearsal at tiny sizes (``cuda: false``), so
that the command cannot rot before a GPU is lent: ``tests/test_gpu_check.py`` runs both
plans.

Writes ``gpu-check.json`` (``--out``) and prints a table. Exit status 0 when every part
ran, the GPU outputs match the CPU's and the CLIP stage's embeddings the serialised ones; 1
otherwise (a goal not met is in ``goals``, not the status).

Usage: python benchmarks/gpu_check.py [--out gpu-check.json] [--rehearsal] [--cores N] [--plan full|demo|all]
                                      [--parts P ...] [--budget-s 480] [--set-dir DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from moclip.workflow import runner

REPO = Path(__file__).resolve().parents[1]
GPU_RULES = ("clip_embed", "train_mvnet", "mv_features")
# Tolerances of the GPU run against the CPU run of the same config (mixed precision is not
# bit-exact, and the MV network trains on another trajectory from the first step).
MIN_CLIP_COSINE = 0.99  # every frame embedding of every valid video
MIN_FUSION_AGREEMENT = 0.95  # the fusion head's top class, every split
MAX_TOP1_GAP = 0.10  # every method's mean top-1 over splits
CPU_THREADED = ("clip", "mvnet", "heads")  # the sections whose cpu_threads fix torch's threads


@dataclass(frozen=True)
class Sizes:
    """What each part measures: the GPU check's real sizes, or the rehearsal's tiny ones."""

    demo: dict = field(default_factory=dict)  # config merged over config.yaml
    clip_model: str = "ViT-B-32"
    clip_videos: int = 256  # x frames.count (8) images a round
    clip_batches: tuple[int, ...] = (4, 16, 64)  # videos a forward pass
    clip_workers: tuple[int, ...] = (1, 4)  # loader processes, at the largest batch
    clip_rounds: int = 2
    mv_arch: str = "efficientnet_b0"
    mv_size: int = 224
    mv_batch: int = 80
    mv_items: int = 1600  # training videos an epoch (the demo's, repeated)
    mv_epochs: int = 3  # the first pays the workers' start: the others are measured
    mv_workers: tuple[int, ...] = (1, 4, 8)
    feat_videos: int = 96
    feat_views: tuple[int, int] = (25, 10)  # segments x crops
    det_size: int = 112  # the determinism check's training: EfficientNet-B0 at this size, 1 epoch
    det_items: int = 160
    predict_videos: int = 30


GPU = Sizes(demo={"mvnet": {"epochs": 30}})  # the default demo (216 videos), as `make demo` runs it
REHEARSAL = Sizes(
    demo={
        "demo": {"groups": 5, "clips": 1, "frames": 24},
        "dataset": {"shards": 2, "splits": [1]},  # the code of every split, a third of the jobs
        "mvnet": {"epochs": 3, "milestones": [2]},
        "heads": {"epochs": 20, "seeds": [0]},
    },
    clip_model="moclip-tiny",
    clip_videos=16,
    clip_batches=(2, 8),
    clip_workers=(0, 1),
    clip_rounds=1,
    mv_arch="tiny",
    mv_size=32,
    mv_batch=8,
    mv_items=32,
    mv_epochs=2,
    mv_workers=(0, 1),
    feat_videos=4,
    feat_views=(3, 10),
    det_size=32,
    det_items=16,
    predict_videos=6,
)


# --------------------------------------------------------------------------- helpers


def peak_gpu_mb(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_snakemake(workdir: Path, config: dict, *args: str, cores: int, log: Path) -> subprocess.Popen:
    """The workflow as a user runs it (the repository's default profile), started in the
    background; its output goes to ``log``."""
    profile = ("--workflow-profile", str(REPO / "profiles" / "default"))
    python_m = [sys.executable, "-m", "snakemake"]  # the snakemake of this Python, wherever its scripts went
    return runner.start(
        workdir, config, *profile, *args, log=log, cores=cores, program=python_m, config_name="check-config.yaml"
    )


def wait_ok(proc: subprocess.Popen, log: Path, what: str) -> None:
    if proc.wait() != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}); the end of {log}:\n{log.read_text()[-3000:]}")


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row (last axis) of a against b."""
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def startup_lines(log: Path) -> list[float]:
    return [float(m) for m in re.findall(r"start-up: first batch done ([\d.]+) s", log.read_text())]


# --------------------------------------------------------------------------- 1. the demo, GPU against CPU


def compare_shards(gpu: Path, cpu: Path, kind: str) -> dict:
    """Every feature shard of ``kind`` (clip or mv) of the GPU run against the CPU run's."""
    from moclip.shards import read_shard

    files = sorted((gpu / "embeddings" / kind).rglob("shard-*.h5"))
    same_videos, cos, precision = True, [], set()
    for a in files:
        ids_a, fa, va, attrs = read_shard(a)
        ids_b, fb, vb, _ = read_shard(cpu / a.relative_to(gpu))
        same_videos &= ids_a == ids_b and bool((va == vb).all())
        if va.any() and va.shape == vb.shape:
            cos.append(cosines(fa[va], fb[va]).ravel())
        precision.add(str(attrs.get("precision")))
    c = np.concatenate(cos) if cos else np.zeros(0)
    return {
        "shards": len(files),
        "same_videos": same_videos,
        "cosine_min": float(c.min()) if len(c) else None,
        "cosine_mean": float(c.mean()) if len(c) else None,
        "precision": sorted(precision),
    }


def read_top(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    return {r[0]: r[head.index("class1")] if len(r) > 2 else "" for r in (ln.split("\t") for ln in lines[1:])}


def compare_methods(gpu: Path, cpu: Path) -> dict:
    """Each method's top-1 a split on both runs, and the heads' top classes' agreement."""
    out: dict[str, dict] = {}
    for m in sorted(gpu.rglob("metrics.json")):
        rel = m.relative_to(gpu)
        if rel.parts[0] not in ("mvnet", "heads"):
            continue
        a, b = json.loads(m.read_text()), json.loads((cpu / rel).read_text())
        rec = out.setdefault(a["method"], {"top1_gpu": [], "top1_cpu": [], "agreement": []})
        rec["top1_gpu"].append(a.get("top1_mean", a["top1"]))
        rec["top1_cpu"].append(b.get("top1_mean", b["top1"]))
        pred = m.parent / "predictions.tsv"
        if pred.exists():
            pa, pb = read_top(pred), read_top(cpu / rel.parent / "predictions.tsv")
            rec["agreement"].append(float(np.mean([pa[v] == pb[v] for v in pa])))
    for rec in out.values():
        rec["top1_gap"] = abs(float(np.mean(rec["top1_gpu"])) - float(np.mean(rec["top1_cpu"])))
        rec["agreement_min"] = min(rec["agreement"]) if rec["agreement"] else None
    return out


def job_table(results: Path) -> dict[str, dict]:
    """Each GPU rule's jobs: start-up (process start to first batch, from its log), wall
    seconds and host peak memory (Snakemake's benchmark files)."""
    out = {}
    for rule, sub in (("clip_embed", "clip"), ("train_mvnet", "mvnet"), ("mv_features", "mv_features")):
        starts = [s for f in sorted((results / "logs" / sub).rglob("*.log")) for s in startup_lines(f)]
        walls, rss = [], []
        for f in sorted((results / "benchmarks" / sub).rglob("*.tsv")):
            row = dict(zip(*(ln.split("\t") for ln in f.read_text().splitlines()[:2])))
            walls.append(float(row["s"]))
            rss.append(float(row["max_rss"]))
        out[rule] = {
            "jobs": len(walls),
            "startup_s": starts,
            "wall_s": walls,
            "max_rss_mb": max(rss) if rss else None,
        }
    return out


def part_demo(sizes: Sizes, dev: torch.device, tmp: Path, cores: int) -> dict:
    on = "cuda" if dev.type == "cuda" else "auto"
    half = max(1, cores // 2)
    # The two runs share the cores side by side: torch's threads a job (the config's, fixed
    # whatever --cores) must fit each run's share, or OpenMP threads spinning on too few
    # cores slow every job many-fold (two 2-thread trainings on 2 cores: an hour, not minutes).
    defaults = yaml.safe_load((REPO / "config.yaml").read_text())
    fit = {s: {"cpu_threads": min(defaults[s]["cpu_threads"], half, cores - half or 1)} for s in CPU_THREADED}
    base = merge(merge(fit, sizes.demo), {"clip": {"device": on}, "mvnet": {"device": on}})
    gpu_wd, cpu_wd = tmp / "demo-gpu", tmp / "demo-cpu"
    t0 = time.perf_counter()
    wait_ok(run_snakemake(gpu_wd, base, "caches", cores=cores, log=tmp / "caches.log"), tmp / "caches.log", "caches")
    t_caches = time.perf_counter() - t0
    shutil.copytree(gpu_wd, cpu_wd, symlinks=True)  # the same demo and caches: only the device differs
    cpu_config = merge(base, {"clip": {"device": "cpu"}, "mvnet": {"device": "cpu"}})
    t0 = time.perf_counter()
    procs = {
        "gpu": run_snakemake(gpu_wd, base, cores=half, log=tmp / "demo-gpu.log"),
        "cpu": run_snakemake(cpu_wd, cpu_config, cores=cores - half or 1, log=tmp / "demo-cpu.log"),
    }
    walls = {}
    while len(walls) < len(procs):  # each run's own wall time (they run side by side)
        for name, p in procs.items():
            if name not in walls and p.poll() is not None:
                walls[name] = time.perf_counter() - t0
                wait_ok(p, tmp / f"demo-{name}.log", f"the demo on the {name}")
        time.sleep(0.2)
    gpu_res, cpu_res = gpu_wd / "results", cpu_wd / "results"
    clip = compare_shards(gpu_res, cpu_res, "clip")
    mv = compare_shards(gpu_res, cpu_res, "mv")
    methods = compare_methods(gpu_res, cpu_res)
    fusion = methods.get("fusion", {})
    checks = {
        "same_videos_in_every_shard": clip["same_videos"] and mv["same_videos"],
        f"clip_cosine_min>={MIN_CLIP_COSINE}": (clip["cosine_min"] or 0) >= MIN_CLIP_COSINE,
        f"fusion_agreement>={MIN_FUSION_AGREEMENT}": (fusion.get("agreement_min") or 0) >= MIN_FUSION_AGREEMENT,
        f"top1_gap<={MAX_TOP1_GAP}": all(m["top1_gap"] <= MAX_TOP1_GAP for m in methods.values()),
    }
    return {
        "config": base,
        "caches_s": t_caches,
        "wall_s": walls,
        "clip_shards": clip,
        "mv_shards": mv,
        "methods": methods,
        "checks": checks,
        "matches_cpu": all(checks.values()),
        "jobs": job_table(gpu_res),
        "workdir": str(gpu_wd),
    }


# --------------------------------------------------------------------------- 2. float16, determinism, predict


def demo_mv_items(workdir: Path, split: int = 1) -> tuple[list, list, int]:
    """The demo run's MV caches as (train, val) items of ``split``, and its class count."""
    from moclip.dataset.videos import class_names, read_manifest, split_rows
    from moclip.mv.data import mv_items

    res = workdir / "results"
    rows = read_manifest(res / "manifest.tsv")
    mv_dirs = sorted((res / "cache" / "mv").glob("shard-*"))
    parts = split_rows(rows, split)
    return mv_items(parts["train"], mv_dirs), mv_items(parts["val"], mv_dirs), len(class_names(rows))


def part_fp16(sizes: Sizes, dev: torch.device, demo: dict) -> dict:
    from moclip.mv.data import MVSettings
    from moclip.mv.train import fit_mvnet

    wd = Path(demo["workdir"])
    train, val, n = demo_mv_items(wd)
    out: dict = {}
    # float16 with the gradient scaler, forced (an Ampere or newer card picks bfloat16)
    s = MVSettings(epochs=6, milestones=(5,), batch_size=16, input_size=64, precision="float16")
    r = fit_mvnet(train, val, n, s, workers=2, device=str(dev))
    out["float16"] = {
        "precision": r.precision,
        "losses": [h["loss"] for h in r.history],
        "val_top1": [h.get("val_top1") for h in r.history],
        "finite": all(np.isfinite(h["loss"]) for h in r.history),
        "chance": 1 / n,
    }
    # two trainings of the real backbone on the card, compared bit for bit
    items = (train * (sizes.det_items // len(train) + 1))[: sizes.det_items]
    s = MVSettings(arch=sizes.mv_arch, input_size=sizes.det_size, epochs=1, milestones=(1,), batch_size=16)
    states = [fit_mvnet(items, [], n, s, workers=2, device=str(dev)).state_dict for _ in range(2)]
    diff = [k for k in states[0] if not torch.equal(states[0][k], states[1][k])]
    out["deterministic"] = {"arch": s.arch, "identical": not diff, "tensors_differing": len(diff), "of": len(states[0])}
    # predict on the card against the CPU (the run's precision, auto: mixed on the card)
    from moclip.dataset.videos import read_manifest
    from moclip.predict import Predictor

    res = wd / "results"
    rows = [r for r in read_manifest(res / "manifest.tsv") if r.split1 == "test"][: sizes.predict_videos]
    videos = [res / "demo" / "UCF-101" / r.path for r in rows]
    tops = {}
    for device in dict.fromkeys([str(dev), "cpu"]):
        p = Predictor(res, 1, device=device)
        tops[device] = [p(v, top=1).classes[0] for v in videos]
    a, b = tops[str(dev)], tops["cpu"]
    out["predict"] = {
        "videos": len(videos),
        "agreement": float(np.mean([x[0] == y[0] for x, y in zip(a, b)])),
        "max_probability_gap": float(max(abs(x[1] - y[1]) for x, y in zip(a, b))),
    }
    return out


# ------------------------------------------------------------------- 3. the CLIP stage against bare encode_image


def part_clip(sizes: Sizes, dev: torch.device, demo: dict, tmp: Path) -> dict:
    from moclip.clip.stream import embed_frame_caches, load_clip
    from moclip.runtime import autocast, autocast_dtype

    res = Path(demo["workdir"]) / "results"
    files = sorted((res / "cache" / "frames").rglob("*.h5"))
    files = (files * (sizes.clip_videos // len(files) + 1))[: sizes.clip_videos]
    ids = [f"v{i}" for i in range(len(files))]
    clip = load_clip(sizes.clip_model, "none", device=str(dev))
    amp = autocast_dtype(dev)
    from moclip.video.frames import read_frames

    k = read_frames(files[0])[0].shape[0]
    n_img = len(files) * k
    rows = []
    plan = [(b, sizes.clip_workers[0]) for b in sizes.clip_batches]
    plan += [(sizes.clip_batches[-1], w) for w in sizes.clip_workers[1:]]
    for batch_videos, workers in plan:
        x = torch.randn(batch_videos * k, 3, clip.image_size, clip.image_size, device=dev)

        def ours(bv=batch_videos, w=workers) -> None:
            embed_frame_caches(clip, files, ids, tmp / "clip-shard.h5", bv, w, str(dev))

        @torch.no_grad()
        def bare(x=x) -> None:
            with autocast(dev, amp):
                for _ in range(n_img // len(x)):
                    clip.model.encode_image(x).float().cpu()

        ours(), bare()  # warm-up
        t = {"ours": [], "bare": []}
        peaks = {}
        for _ in range(sizes.clip_rounds):
            for name, fn in (("ours", ours), ("bare", bare)):
                reset_peak(dev)
                t0 = time.perf_counter()
                fn()
                sync(dev)
                t[name].append(time.perf_counter() - t0)
                peaks[name] = peak_gpu_mb(dev)
        ratio = statistics.median(b / o for b, o in zip(t["bare"], t["ours"]))
        rows.append(
            {
                "batch_videos": batch_videos,
                "batch_images": batch_videos * k,
                "workers": workers,
                "stage_images_per_s": n_img / statistics.median(t["ours"]),
                "bare_images_per_s": n_img / statistics.median(t["bare"]),
                "stage_over_bare": ratio,
                "peak_gpu_mb": peaks["ours"],
            }
        )
    decode = jpeg_decode(files, sizes.clip_batches[-1], dev, sizes.clip_rounds)
    return {"model": sizes.clip_model, "images_a_round": n_img, "precision": str(amp), "rows": rows, "decode": decode}


def jpeg_decode(files: list[Path], batch_videos: int, dev: torch.device, rounds: int) -> dict:
    """Images a second of ``decode_frames`` on ``dev`` (``batch_videos`` videos a call, the
    stage's) and on the CPU (one thread, as a loader worker), alternating rounds; the
    frames read once beforehand, so that only decoding is timed."""
    from moclip.video.cache import open_cache
    from moclip.video.frames import decode_frames, stored_frames

    stored = []
    for f in files:
        with open_cache(f) as h:
            stored.append(stored_frames(h))
    if stored[0].encoding != "jpeg":
        return {"encoding": stored[0].encoding}
    batches = [stored[i : i + batch_videos] for i in range(0, len(stored), batch_videos)]
    n_img = sum(s.shape[0] for s in stored)
    threads = torch.get_num_threads()
    t: dict[str, list[float]] = {"device": [], "cpu": []}
    for _ in range(rounds + 1):  # the first round warms up
        for name, where in (("device", dev), ("cpu", torch.device("cpu"))):
            torch.set_num_threads(1 if name == "cpu" else threads)
            t0 = time.perf_counter()
            for b in batches:
                decode_frames(b, where)
            sync(dev)
            t[name].append(time.perf_counter() - t0)
            torch.set_num_threads(threads)
    return {
        "encoding": "jpeg",
        "images": n_img,
        "batch_videos": batch_videos,
        "device_images_per_s": n_img / statistics.median(t["device"][1:]),
        "cpu_images_per_s": n_img / statistics.median(t["cpu"][1:]),
    }


# --------------------------------------------------------------------------- 4. MV training, 5. MV features


def part_mv_train(sizes: Sizes, dev: torch.device, demo: dict) -> dict:
    from moclip.mv.data import MVSettings
    from moclip.mv.train import fit_mvnet

    train, _, n = demo_mv_items(Path(demo["workdir"]))
    items = (train * (sizes.mv_items // len(train) + 1))[: sizes.mv_items]
    paper = yaml.safe_load((REPO / "config" / "ucf101-paper.yaml").read_text())["mvnet"]
    s = MVSettings.from_config(
        {
            **paper,
            "arch": sizes.mv_arch,
            "pretrained": False,  # random weights of the real architecture: nothing downloaded
            "input_size": sizes.mv_size,
            "batch_size": sizes.mv_batch,
            "epochs": sizes.mv_epochs,
            "milestones": [sizes.mv_epochs],
            "input_bn": paper["input_bn"] and sizes.mv_arch != "tiny",
        }
    )
    rows = []
    for workers in sizes.mv_workers:
        reset_peak(dev)
        r = fit_mvnet(items, [], n, s, workers=workers, device=str(dev))
        later = r.history[1:] or r.history
        secs = sum(h["seconds"] for h in later)
        rows.append(
            {
                "workers": workers,
                "samples_per_s": len(items) * s.segments * len(later) / secs,
                "data_wait_share": sum(h["data_wait"] for h in later) / secs,
                "first_epoch_s": r.history[0]["seconds"],
                "peak_gpu_mb": peak_gpu_mb(dev),
                "precision": r.precision,
            }
        )
    return {
        "arch": s.arch,
        "input_size": s.input_size,
        "batch": f"{s.batch_size} x {s.segments}",
        "augment": {"scales": s.augment_scales, "unit": s.augment_unit},
        "rows": rows,
    }


def part_mv_features(sizes: Sizes, dev: torch.device, demo: dict, tmp: Path) -> dict:
    from moclip.mv.data import MVSettings
    from moclip.mv.nets import MVNet
    from moclip.mv.stream import extract_features

    train, _, n = demo_mv_items(Path(demo["workdir"]))
    items = (train * (sizes.feat_videos // len(train) + 1))[: sizes.feat_videos]
    seg, crops = sizes.feat_views
    s = MVSettings(arch=sizes.mv_arch, input_size=sizes.mv_size, eval_segments=seg, eval_crops=crops)
    model = MVNet(s.arch, n).to(dev).eval()
    valid = np.ones(len(items), bool)
    extract_features(model, s, items[: max(1, len(items) // 8)], valid[: max(1, len(items) // 8)], tmp / "f.h5", 2)
    rows = []
    for workers in (1, 4) if dev.type == "cuda" else (0,):
        reset_peak(dev)
        t0 = time.perf_counter()
        extract_features(model, s, items, valid, tmp / "f.h5", workers)
        sync(dev)
        dt = time.perf_counter() - t0
        rows.append(
            {
                "workers": workers,
                "videos_per_s": len(items) / dt,
                "inputs_per_s": len(items) * seg * crops / dt,
                "peak_gpu_mb": peak_gpu_mb(dev),
            }
        )
    return {"arch": s.arch, "input_size": s.input_size, "views": f"{seg} x {crops}", "videos": len(items), "rows": rows}


# --------------------------------------------------------------------------- 6. start-up of each GPU stage


_PROBE = r"""
import json, logging, sys, time
t = {}
from moclip.runtime import log_to, process_age
t["python"] = process_age()
args = json.loads(sys.argv[1])
log_to(args["log"])
import torch
t["import torch"] = process_age()
if args["kw"]["device"] == "cuda":
    torch.cuda.init(); torch.zeros(1, device="cuda")
t["cuda context"] = process_age()
import h5py, timm, open_clip
t["import h5py, timm, open_clip"] = process_age()
stage = args["stage"]
if stage == "clip_embed":
    from moclip.clip.stream import ClipSettings, clip_embed
    kw = dict(args["kw"]); kw["settings"] = ClipSettings.from_config(kw["settings"])
    clip_embed(**kw)
elif stage == "train_mvnet":
    from moclip.mv.data import MVSettings
    from moclip.mv.stream import train_mvnet
    kw = dict(args["kw"]); kw["settings"] = MVSettings.from_config(kw["settings"])
    train_mvnet(**kw)
else:
    from moclip.mv.stream import mv_features
    mv_features(**args["kw"])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
print(json.dumps({"vmhwm_mb": hwm / 1024, "peak_gpu_mb": gpu, "breakdown_s": t}))
"""


def part_startup(sizes: Sizes, dev: torch.device, demo: dict, tmp: Path) -> dict:
    """Each GPU stage's own entry point, with the real architecture (random weights), in a
    fresh process on a shard of the demo: the job's start-up as its log reports it, its
    host peak memory and its GPU peak."""
    res = Path(demo["workdir"]) / "results"
    device = "cuda" if dev.type == "cuda" else "cpu"
    threads = min(5, os.cpu_count() or 1)  # a GPU job's (rules/common.smk), as Snakemake caps it by the cores
    paper = yaml.safe_load((REPO / "config" / "ucf101-paper.yaml").read_text())["mvnet"]
    mv = {
        **paper,
        "arch": sizes.mv_arch,
        "pretrained": False,
        "input_bn": sizes.mv_arch != "tiny",
        "input_size": sizes.mv_size,
        "batch_size": sizes.mv_batch,
        "epochs": 1,
        "milestones": [1],
        "eval_segments": 2,  # the probe's test: short
        "eval_crops": 1,
        "seed": 0,
    }
    features = {**mv, "eval_segments": sizes.feat_views[0], "eval_crops": sizes.feat_views[1]}
    shards = sorted(p.name for p in (res / "cache" / "mv").glob("shard-*"))
    model = tmp / "probe-model.pt"
    jobs = {
        "clip_embed": {
            "frames": [str(res / "cache" / "frames" / shards[0])],
            "index": [str(res / "cache" / "index" / f"{shards[0]}.tsv")],
            "out": [str(tmp / "probe-clip.h5")],
            "settings": {"model": sizes.clip_model, "pretrained": "none", "batch_videos": 16, "dtype": "float16"},
            "device": device,
            "threads": threads,
        },
        "train_mvnet": {
            "manifest": str(res / "manifest.tsv"),
            "mv": [str(res / "cache" / "mv" / s) for s in shards],
            "index": [str(res / "cache" / "index" / f"{s}.tsv") for s in shards],
            "split": 1,
            "settings": mv,
            "model": str(model),
            "training": str(tmp / "probe-training.json"),
            "metrics": str(tmp / "probe-metrics.json"),
            "device": device,
            "threads": threads,
        },
        "mv_features": {
            "models": [str(tmp / "probe-model-features.pt")],  # the trained network, tested on 25 x 10 views
            "mv": [str(res / "cache" / "mv" / shards[0])],
            "index": [str(res / "cache" / "index" / f"{shards[0]}.tsv")],
            "out": [str(tmp / "probe-mv.h5")],
            "device": device,
            "threads": threads,
        },
    }
    out = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for stage, kw in jobs.items():
        if stage == "mv_features":  # the probe's network with the feature views of the paper's test
            ck = torch.load(model, weights_only=True)
            ck["meta"]["settings"] = json.dumps(features)
            torch.save(ck, kw["models"][0])
        log = tmp / f"probe-{stage}.log"
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-c", _PROBE, json.dumps({"stage": stage, "kw": kw, "log": str(log)})],
            capture_output=True,
            text=True,
            env=env,
        )
        if p.returncode != 0:
            raise RuntimeError(f"{stage} probe failed:\n{p.stderr[-3000:]}")
        rec = json.loads(p.stdout.strip().splitlines()[-1])
        starts = startup_lines(log)
        out[stage] = {"startup_s": starts[0] if starts else None, "wall_s": time.perf_counter() - t0, **rec}
    out["architectures"] = {"clip": sizes.clip_model, "mv": f"{sizes.mv_arch} at {sizes.mv_size} px"}
    return out


# --------------------------------------------------------------------------- 7. the full-size run
# A UCF101-sized synthetic set made on this machine's cores, then every GPU stage on it
# through the real code, each against its bare ceiling, and the three-split projection of
# both presets from these rates alone (full_projection).


@dataclass(frozen=True)
class FullSizes:
    """The full-size run's sizes (UCF101's at 340x256) and each part's time box, seconds."""

    videos: int = 13_320
    classes: int = 101
    height: int = 256
    width: int = 340  # CoViAR's re-encode
    gop: int = 12
    mv_frames: int = 48  # 4 GOPs a video: a segment's reads and trace cost as in a long video
    frames: int = 8  # CLIP frames a video (config/ucf101.yaml)
    shard_videos: int = 256  # as dataset.shards: auto
    clip_model: str = "ViT-B-32"
    clip_batch_videos: int = 64  # x 8 frames: 512 images a forward pass, as the bare encode_image
    clip_workers: tuple[int, ...] = (4, 8)
    check_videos: int = 256  # the stage's embeddings against a serialised decode/encode, and nvJPEG against the CPU
    mv_arch: str = "efficientnet_b0"
    mv_size: int = 224
    mv_workers: int = (
        0  # loader workers of the MV stages; 0: the workflow's on a GPU (moclip.workflow.layout.GPU_THREADS - 1)
    )
    mv_epochs: int = 2
    mv_epoch_s: float = 40.0  # the training's epoch at most: a subset of the split where the loader is slower
    feat_videos: int = 128  # the paper's 25 x 10 views
    feat_videos_ucf101: int = 512  # config/ucf101.yaml's 8 x 1
    draw_videos: int = 480
    draws: int = 2
    head_epochs: int = 5
    bare_steps: int = 30
    concurrent: int = 3
    concurrent_videos: int = 3200  # each training's epoch (config/ucf101.yaml's loader)
    concurrent_epochs: int = 2
    concurrent_workers: int = 4
    budget_s: dict = field(
        default_factory=lambda: {
            "full_set": 240,
            "full_clip": 90,
            "nvjpeg": 30,
            "full_mv_train": 150,
            "full_mv_features": 60,
            "full_heads": 30,
            "bare_mv": 40,
            "deterministic": 50,
            "concurrent": 110,
            "compile": 120,
        }
    )


FULL = FullSizes()
FULL_REHEARSAL = FullSizes(
    videos=60,
    classes=5,
    mv_frames=24,
    shard_videos=16,
    clip_model="moclip-tiny",
    clip_batch_videos=4,
    clip_workers=(0, 1),
    check_videos=8,
    mv_arch="tiny",
    mv_size=32,
    mv_workers=1,
    feat_videos=2,
    feat_videos_ucf101=4,
    draw_videos=4,
    draws=2,
    head_epochs=2,
    bare_steps=2,
    concurrent=2,  # two 1-thread processes on 2 cores, never more
    concurrent_videos=16,
    concurrent_epochs=2,
    concurrent_workers=0,
)
FULL_PARTS = (  # most telling first: a run cut short keeps them
    "full_set",
    "full_clip",
    "nvjpeg",
    "full_mv_train",
    "bare_mv",
    "full_mv_features",
    "full_heads",
    "concurrent",
    "deterministic",
    "compile",
)


class PartTimeout(Exception):
    """A part ran past its time box (SIGALRM)."""


def _alarm(signum, frame):
    raise PartTimeout("ran past its time box")


def run_part(fn, box: float | None) -> dict:
    """``fn()``'s result, or its error (a PartTimeout past ``box`` seconds included): a part
    that fails or overruns never stops the others. ``seconds`` and ``time_box_s`` added."""
    t0 = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(max(1, round(box)) if box else 0)
    try:
        result = fn()
    except Exception:
        result = {"error": traceback.format_exc()}
    finally:
        signal.alarm(0)
    result["seconds"] = time.perf_counter() - t0
    if box:
        result["time_box_s"] = box
    return result


def video_id(i: int, classes: int) -> tuple[str, int, int]:
    """The i-th synthetic video: (UCF101-style id, label, group 1-25)."""
    label, group, clip = i % classes, (i // classes) % 25 + 1, i // (classes * 25) + 1
    return f"v_Class{label:03d}_g{group:02d}_c{clip:02d}", label, group


def split1_part(group: int) -> str:
    """UCF101 split 1 by group, with 3 training groups for validation (as dataset.val_groups)."""
    return "test" if group <= 7 else "val" if group <= 10 else "train"


def _camera_video(args: tuple) -> int:
    """One synthetic video's MV and frame caches, as cache_video writes them: camera-like
    dense motion (a pan plus per-block noise, half-pixel vectors, GOP ``gop``, no B-frames)
    and JPEG frames of a smooth texture panned the same way. Seeded by the index. Bytes."""
    import h5py
    import PIL.Image

    from moclip.video.cache import COMPRESSION, FrameStorage, write_frames

    i, mv_path, frames_path, fs = args
    rng = np.random.default_rng([7, i])
    h, w, cell = fs.height, fs.width, 8
    hc, wc, t = -(-h // cell), -(-w // cell), fs.mv_frames
    ftype = np.frombuffer((("I" + "P" * (fs.gop - 1)) * (t // fs.gop + 1))[:t].encode(), np.uint8).copy()
    pan = rng.normal(0, 3, (1, 1, 1, 2)) + rng.normal(0, 0.5, (t, 1, 1, 2))
    mv = (np.round((pan + rng.normal(0, 1.5, (t, hc, wc, 2))) * 2) / 2).astype(np.float16)
    mv[ftype == ord("I")] = 0
    ref = (ftype == ord("P")).astype(np.int16)
    vid, _, _ = video_id(i, fs.classes)
    attrs = dict(
        video_id=vid, status="ok", error="", width=w, height=h, fps=25.0, codec="mpeg4", n_frames=t, mv_cell=cell
    )
    attrs.update(truncated=False, notes="synthetic", n_mv_frames=int(ref.sum()))
    chunks = (min(64, t), hc, wc, 2)
    with h5py.File(mv_path, "w") as f:
        f.create_dataset("mv", data=mv, chunks=chunks, fletcher32=True, **COMPRESSION["lz4"])
        f.create_dataset("frame_type", data=ftype, fletcher32=True, chunks=ftype.shape)
        f.create_dataset("ref_distance", data=ref, fletcher32=True, chunks=ref.shape)
        f.attrs.update(attrs)
    pad = 160  # the pan's reach over the frames kept
    base = rng.integers(0, 256, (h // 16 + 24, w // 16 + 24, 3), dtype=np.uint8)
    tex = np.asarray(PIL.Image.fromarray(base).resize((w + 2 * pad, h + 2 * pad), PIL.Image.BICUBIC), np.int16)
    tex = np.clip(tex + rng.integers(-6, 7, tex.shape), 0, 255).astype(np.uint8)  # sensor grain
    index = ((np.arange(fs.frames) + 0.5) * t / fs.frames).astype(np.int32)
    shift = np.cumsum(pan[:, 0, 0, :], axis=0)  # the camera's path, px
    frames = []
    for k in index:
        dy, dx = (np.clip(np.round(shift[k]), -pad, pad) + pad).astype(int)
        frames.append(tex[dy : dy + h, dx : dx + w])
    with h5py.File(frames_path, "w") as f:
        stored = write_frames(f, np.stack(frames), FrameStorage("jpeg", 95))
        f.create_dataset("frame_index", data=index)
        f.attrs.update({**attrs, **stored, "second_pass": False})
    return mv_path.stat().st_size + frames_path.stat().st_size


def full_set(fs: FullSizes, root: Path, cores: int) -> dict:
    """The synthetic set under ``root`` (kept between runs on the same machine: a finished
    set with the same sizes is reused): shard folders of MV and frame caches, and the
    split-1 items."""
    import multiprocessing

    spec = {k: getattr(fs, k) for k in ("videos", "classes", "height", "width", "gop", "mv_frames", "frames")}
    spec["shard_videos"] = fs.shard_videos
    done = root / "complete.json"
    t0 = time.perf_counter()
    reused = done.exists() and json.loads(done.read_text()).get("spec") == spec
    jobs = []
    for i in range(fs.videos):
        shard = f"shard-{i // fs.shard_videos:05d}"
        vid = video_id(i, fs.classes)[0]
        jobs.append((i, root / "mv" / shard / f"{vid}.h5", root / "frames" / shard / f"{vid}.h5", fs))
    if not reused:
        shutil.rmtree(root, ignore_errors=True)
        for _, m, f, _ in jobs:
            m.parent.mkdir(parents=True, exist_ok=True)
            f.parent.mkdir(parents=True, exist_ok=True)
        ctx = multiprocessing.get_context("spawn")  # no torch state forked
        with ctx.Pool(max(1, cores)) as pool:
            size = sum(pool.imap_unordered(_camera_video, jobs, chunksize=16))
        done.write_text(json.dumps({"spec": spec, "bytes": size}))
    info = {"root": str(root), "spec": spec, "reused": reused, "seconds": time.perf_counter() - t0}
    info["bytes"] = json.loads(done.read_text())["bytes"]
    info["parts"] = {
        p: sum(split1_part(video_id(i, fs.classes)[2]) == p for i in range(fs.videos)) for p in ("train", "val", "test")
    }
    return info


def full_items(fs: FullSizes, root: Path) -> dict[str, list]:
    """Split 1's MV items by part, and every video's frame cache (``frames``) in shard order."""
    from moclip.mv.data import MVItem

    out: dict[str, list] = {"train": [], "val": [], "test": [], "frames": []}
    for i in range(fs.videos):
        vid, label, group = video_id(i, fs.classes)
        shard = f"shard-{i // fs.shard_videos:05d}"
        out[split1_part(group)].append(MVItem(vid, root / "mv" / shard / f"{vid}.h5", label))
        out["frames"].append(root / "frames" / shard / f"{vid}.h5")
    return out


def preset_config(preset: str) -> dict:
    """config/<preset>.yaml merged over config.yaml, as the workflow reads it."""
    return merge(
        yaml.safe_load((REPO / "config.yaml").read_text()),
        yaml.safe_load((REPO / "config" / f"{preset}.yaml").read_text()),
    )


def _paper_mv(fs: FullSizes, **over):
    """The paper preset's mvnet settings at this run's architecture and size, random weights."""
    return _preset_mv("ucf101-paper", fs, **over)


def _preset_mv(preset: str, fs: FullSizes, **over):
    """A preset's mvnet settings at this run's architecture and size, random weights."""
    from moclip.mv.data import MVSettings

    cfg = {k: v for k, v in preset_config(preset)["mvnet"].items() if k in MVSettings.__dataclass_fields__}
    tiny = fs.mv_arch == "tiny"
    cfg.update(arch=fs.mv_arch, pretrained=False, input_size=fs.mv_size, input_bn=cfg["input_bn"] and not tiny)
    cfg.update(over)
    return MVSettings.from_config(cfg)


def part_full_clip(fs: FullSizes, dev: torch.device, info: dict, tmp: Path, budget: float) -> dict:
    """CLIP over every video of the set in one stage call a loader setting (its steady state:
    the images after the first batch over the time after it), bare ``encode_image`` at the
    same batch on inputs already on the card, and the stage's embeddings of the first
    videos against a serialised decode and encode (a decode/encode race would show)."""
    from moclip.clip.stream import FrameShard, embed_shards, encode_videos, load_clip
    from moclip.runtime import autocast, autocast_dtype
    from moclip.video.frames import decode_frames

    t_start = time.perf_counter()
    items = full_items(fs, Path(info["root"]))
    files = items["frames"]
    shards = []
    for k in range(0, len(files), fs.shard_videos):
        part = files[k : k + fs.shard_videos]
        shards.append(
            FrameShard([p.stem for p in part], part, tmp / "clip-full" / f"shard-{k // fs.shard_videos:05d}.h5")
        )
    (tmp / "clip-full").mkdir(parents=True, exist_ok=True)
    clip = load_clip(fs.clip_model, "none", device=str(dev))
    amp = autocast_dtype(dev)
    rows = []
    for workers in fs.clip_workers:
        if rows and time.perf_counter() - t_start > budget / 2:
            rows.append({"workers": workers, "skipped": "time box"})
            continue
        reset_peak(dev)
        stats: dict = {}
        embed_shards(clip, shards, fs.clip_batch_videos, workers, str(dev), "float16", stats=stats)
        steady = stats["images_after_first"] / max(stats["seconds"] - stats["first_batch_s"], 1e-9)
        rows.append(
            {
                "workers": workers,
                "videos": len(files),
                "images": stats["images"],
                "seconds": stats["seconds"],
                "first_batch_s": stats["first_batch_s"],
                "images_per_s": stats["images"] / stats["seconds"],
                "steady_images_per_s": steady,
                "peak_gpu_mb": peak_gpu_mb(dev),
            }
        )
    batch = fs.clip_batch_videos * fs.frames
    x = torch.randn(batch, 3, clip.image_size, clip.image_size, device=dev)
    n_batches = max(3, min(len(files) * fs.frames // batch, 200))

    @torch.no_grad()
    def bare(n: int) -> float:
        sync(dev)
        t0 = time.perf_counter()
        with autocast(dev, amp):
            for _ in range(n):
                z = clip.model.encode_image(x)
        z.float().sum().item()  # the last result waited for, once
        return time.perf_counter() - t0

    bare(2)
    t_bare = bare(n_batches)
    bare_rate = n_batches * batch / t_bare
    # the stage's rows against a serialised pipeline (every decode and encode waited for)
    from moclip.shards import read_shard
    from moclip.video.cache import open_cache
    from moclip.video.frames import stored_frames

    n = min(fs.check_videos, len(files))
    got = np.concatenate([read_shard(sh.out)[1] for sh in shards])[:n]
    ref = []
    with torch.no_grad():
        for k in range(0, n, fs.clip_batch_videos):
            stored = []
            for p in files[k : min(k + fs.clip_batch_videos, n)]:
                with open_cache(p) as h:
                    stored.append(stored_frames(h))
            frames = torch.stack(decode_frames(stored, dev))
            sync(dev)
            ref.append(encode_videos(clip, frames, dev, amp).cpu().numpy())
            sync(dev)
    c = cosines(got.reshape(-1, got.shape[-1]), np.concatenate(ref).reshape(-1, got.shape[-1]))
    best = max((r for r in rows if "steady_images_per_s" in r), key=lambda r: r["steady_images_per_s"])
    return {
        "model": fs.clip_model,
        "precision": str(amp),
        "batch_images": batch,
        "rows": rows,
        "bare_images_per_s": bare_rate,
        "bare_batches": n_batches,
        "stage_over_bare": best["steady_images_per_s"] / bare_rate,
        "stage_over_bare_with_fill": best["images_per_s"] / bare_rate,
        "best_workers": best["workers"],
        "videos_per_s": best["steady_images_per_s"] / fs.frames,
        "serialised_check": {"videos": n, "cosine_min": float(c.min()), "same": bool(c.min() > 0.999)},
    }


def part_nvjpeg(fs: FullSizes, dev: torch.device, info: dict) -> dict:
    """The card's JPEG decode against the CPU's on the set's first videos: grey levels and
    CLIP cosine (decoder_agreement); and both decoders' images/s (jpeg_decode)."""
    from moclip.clip.stream import decoder_agreement, load_clip
    from moclip.video.cache import open_cache
    from moclip.video.frames import stored_frames

    files = full_items(fs, Path(info["root"]))["frames"][: fs.check_videos]
    stored = []
    for p in files:
        with open_cache(p) as h:
            stored.append(stored_frames(h))
    clip = load_clip(fs.clip_model, "none", device=str(dev))
    agree = decoder_agreement(clip, stored, str(dev), fs.clip_batch_videos)
    speed = jpeg_decode(files, fs.clip_batch_videos, dev, rounds=2)
    return {**agree, "goal_mean_abs_grey": 1.5, "meets_goal": (agree["mean_abs_grey"] or 0) <= 1.5, "speed": speed}


def bare_mv_ceilings(s, n_classes: int, dev: torch.device, steps: int) -> dict:
    """The MV network's bare ceilings on inputs already on the card: the training step at
    the recipe's batch (``s.batch_size`` x ``s.segments`` maps at the input size, no
    augmentation, the loss never read back until the end) and the feature pass at the
    test batch (eval_images inputs). Segments/s and inputs/s, under ``s.precision``."""
    from moclip.mv.nets import MVNet
    from moclip.mv.train import eval_images, make_optimizer, train_step
    from moclip.runtime import autocast, autocast_dtype, precision_name

    torch.manual_seed(0)
    amp = autocast_dtype(dev, s.precision)
    model = MVNet(s.arch, n_classes, False, s.input_bn).to(dev)
    opt = make_optimizer(model, s)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
    x = torch.randn(s.batch_size, s.segments, 2, s.input_size, s.input_size, device=dev)
    y = torch.randint(0, n_classes, (s.batch_size,), device=dev)

    def train(n: int) -> float:
        model.train()
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(n):
            loss = train_step(model, opt, scaler, x, y, s, None, amp)
        float(loss)
        return time.perf_counter() - t0

    reset_peak(dev)
    train(3)
    t_train = train(steps)
    train_peak = peak_gpu_mb(dev)
    model.eval()
    xf = torch.randn(min(eval_images(dev), 4 * s.batch_size * s.segments), 2, s.input_size, s.input_size, device=dev)

    @torch.no_grad()
    def features(n: int) -> float:
        sync(dev)
        t0 = time.perf_counter()
        with autocast(dev, amp):
            for _ in range(n):
                f = model.features(xf)
        float(f.float().sum())
        return time.perf_counter() - t0

    features(2)
    n_feat = max(2, steps // 3)
    t_feat = features(n_feat)
    return {
        "arch": s.arch,
        "input_size": s.input_size,
        "batch": f"{s.batch_size} x {s.segments}",
        "precision": precision_name(amp),
        "deterministic": torch.backends.cudnn.deterministic,
        "train_segments_per_s": steps * s.batch_size * s.segments / t_train,
        "train_peak_gpu_mb": train_peak,
        "feature_inputs_per_s": n_feat * len(xf) / t_feat,
        "feature_batch": len(xf),
    }


def part_bare_mv(fs: FullSizes, dev: torch.device) -> dict:
    """The bare step timed two ways: this script's (no augmentation, the input already at
    the network's size) and the library's ceilings, which time what the stage runs (resize
    from the frame's maps, augmentation, the step; the feature pass with its views), eager
    and, for the training step, under ``torch.compile`` with its compile time beside."""
    from moclip.mv.train import feature_ceiling, train_ceiling

    s = _paper_mv(fs)
    out = bare_mv_ceilings(s, fs.classes, dev, fs.bare_steps)
    out["stage_step_segments_per_s"] = train_ceiling(s, device=str(dev), n_classes=fs.classes, steps=fs.bare_steps)
    out["stage_feature_inputs_per_s"] = feature_ceiling(s, device=str(dev), n_classes=fs.classes)
    return out


def part_compile(fs: FullSizes, dev: torch.device) -> dict:
    """``mvnet.compile``: the library's bare step eager and under ``torch.compile``, and the
    compiled call's seconds with its compile (paid in the warm-up steps) included."""
    from moclip.mv.train import train_ceiling

    eager = train_ceiling(_paper_mv(fs), device=str(dev), n_classes=fs.classes, steps=fs.bare_steps)
    t0 = time.perf_counter()
    compiled = train_ceiling(_paper_mv(fs, compile=True), device=str(dev), n_classes=fs.classes, steps=fs.bare_steps)
    return {
        "eager_step_segments_per_s": eager,
        "compiled_step_segments_per_s": compiled,
        "compiled_call_s": time.perf_counter() - t0,
        "compile_gain": compiled / eager,
    }


def set_deterministic(on: bool) -> None:
    """The deterministic settings of moclip.runtime.make_deterministic, or torch's defaults
    with cuDNN's benchmark search (the fastest it offers)."""
    from moclip.runtime import make_deterministic

    if on:
        make_deterministic()
    else:
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
        torch.use_deterministic_algorithms(False)


def part_deterministic(fs: FullSizes, dev: torch.device) -> dict:
    """The bare training step with the deterministic settings off, then on (train_mvnet's
    default): their cost. The process is left deterministic, as train_mvnet leaves it."""
    from moclip.mv.train import train_ceiling

    rows = {}
    for on in (False, True):
        set_deterministic(on)
        rows["on" if on else "off"] = bare_mv_ceilings(_paper_mv(fs), fs.classes, dev, fs.bare_steps)
        # the library's step under mvnet.deterministic, set as fit_mvnet sets it
        rows["on" if on else "off"]["stage_step_segments_per_s"] = train_ceiling(
            _paper_mv(fs, deterministic=on), device=str(dev), n_classes=fs.classes, steps=fs.bare_steps
        )
    on, off = rows["on"]["train_segments_per_s"], rows["off"]["train_segments_per_s"]
    cost = 1 - on / off
    return {
        "off": rows["off"],
        "on": rows["on"],
        "cost_share": cost,
        "keep_default": cost <= 0.15,
        "feature_cost_share": 1 - rows["on"]["feature_inputs_per_s"] / rows["off"]["feature_inputs_per_s"],
    }


def mv_workers(fs: FullSizes) -> int:
    """The MV stages' loader workers: the workflow's for a GPU job unless the sizes say."""
    from moclip.workflow.layout import GPU_THREADS

    return fs.mv_workers or GPU_THREADS - 1


def loader_rate(items: list, s, workers: int, batches: int = 8) -> float:
    """Segments/s the training loader delivers alone (its workers started, then ``batches``
    timed): how many videos an epoch of at most mv_epoch_s can take."""
    from moclip.mv.data import EpochOrder, MVClips, mv_loader

    loader = mv_loader(MVClips(items, s, s.segments, s.seed), s.batch_size, workers, EpochOrder(len(items), s.seed))
    it = iter(loader)
    next(it)
    t0, n = time.perf_counter(), 0
    for _, (x, _) in zip(range(batches), it):
        n += x.shape[0] * x.shape[1]
    return n / (time.perf_counter() - t0)


def part_full_mv_train(fs: FullSizes, dev: torch.device, info: dict) -> dict:
    """Split 1's training videos for ``mv_epochs`` epochs with the paper preset's loader
    (CoViAR's accumulation, its augmentation; the workflow's workers) and validation every
    epoch, as train_mvnet runs it: segments/s of each epoch, the share waiting for data,
    the validation's time. Where the loader alone cannot deliver an epoch of the split in
    ``mv_epoch_s``, a subset of the split (and of its validation videos, in proportion)."""
    from moclip.mv.train import fit_mvnet

    items = full_items(fs, Path(info["root"]))
    s = _paper_mv(fs, epochs=fs.mv_epochs, milestones=[fs.mv_epochs])
    workers = mv_workers(fs)
    probe = loader_rate(items["train"], s, workers)
    keep = min(1.0, probe * fs.mv_epoch_s / s.segments / len(items["train"]))
    train = items["train"][: max(s.batch_size, int(keep * len(items["train"])))]
    val = items["val"][: max(1, int(keep * len(items["val"])))]
    reset_peak(dev)
    t0 = time.perf_counter()
    r = fit_mvnet(train, val, fs.classes, s, workers=workers, device=str(dev))
    wall = time.perf_counter() - t0
    seg = len(train) * s.segments
    epochs = [
        {
            "epoch": h["epoch"],
            "seconds": h["seconds"],
            "segments_per_s": seg / h["seconds"],
            "data_wait_share": h["data_wait"] / h["seconds"],
        }
        for h in r.history
    ]
    steady = epochs[-1]
    other = wall - sum(h["seconds"] for h in r.history)  # validation each epoch, plus the model's build
    return {
        "preset": "ucf101-paper",
        "arch": s.arch,
        "input_size": s.input_size,
        "batch": f"{s.batch_size} x {s.segments}",
        "workers": workers,
        "loader_alone_segments_per_s": probe,
        "train_videos": len(train),
        "val_videos": len(val),
        "split_train_videos": len(items["train"]),
        "split_val_videos": len(items["val"]),
        "epochs": epochs,
        "segments_per_s": steady["segments_per_s"],
        "data_wait_share": steady["data_wait_share"],
        "wall_s": wall,
        "val_s_per_epoch": other / len(r.history),  # counts the build once an epoch: an upper bound
        "val_s_per_video": other / len(r.history) / max(1, len(val)),
        "precision": r.precision,
        "peak_gpu_mb": peak_gpu_mb(dev),
        "goal_segments_per_s": {"H100": 2900, "H200": 3300},
    }


def part_full_mv_features(fs: FullSizes, dev: torch.device, info: dict, tmp: Path) -> dict:
    """mv_features' two passes on the set with each preset's views and loader: the fixed
    evaluation views (paper 25 x 10, config/ucf101.yaml 8 x 1) and the paper's draws of
    training segments; videos/s and network inputs/s."""
    from moclip.mv.nets import MVNet
    from moclip.mv.stream import FeatureShard, extract_draws, extract_shards

    items = full_items(fs, Path(info["root"]))
    workers = mv_workers(fs)
    out = {}
    for preset, n in (("ucf101-paper", fs.feat_videos), ("ucf101", fs.feat_videos_ucf101)):
        s = _preset_mv(preset, fs)
        model = MVNet(s.arch, fs.classes, False, s.input_bn).to(dev).eval()
        vids = items["test"][:n]
        shard = FeatureShard(vids, np.ones(len(vids), bool), tmp / f"feat-{preset}.h5")
        warm = FeatureShard(vids[:1], np.ones(1, bool), tmp / f"feat-{preset}-warm.h5")
        extract_shards(model, s, [warm], workers)
        reset_peak(dev)
        sync(dev)
        t0 = time.perf_counter()
        extract_shards(model, s, [shard], workers)
        sync(dev)
        dt = time.perf_counter() - t0
        rec = {
            "views": f"{s.eval_segments} x {s.eval_crops}",
            "videos": len(vids),
            "videos_per_s": len(vids) / dt,
            "inputs_per_s": len(vids) * s.eval_views / dt,
            "peak_gpu_mb": peak_gpu_mb(dev),
        }
        if preset == "ucf101-paper":
            train = items["train"][: fs.draw_videos]
            dshard = FeatureShard(train, np.ones(len(train), bool), tmp / "feat-draws.h5", np.ones(len(train), bool))
            extract_shards(
                model, replace(s, eval_segments=1, eval_crops=1), [dshard], workers
            )  # the file draws go into
            sync(dev)
            t0 = time.perf_counter()
            extract_draws(model, s, [dshard], fs.draws, workers)
            sync(dev)
            dt = time.perf_counter() - t0
            rec["draws"] = {
                "videos": len(train),
                "draws": fs.draws,
                "segments_per_s": len(train) * fs.draws * s.segments / dt,
                "seconds": dt,
            }
        out[preset] = rec
    return {"arch": fs.mv_arch, "workers": workers, **out}


def part_full_heads(fs: FullSizes, info: dict) -> dict:
    """Each head's epoch at split 1's size (random features of CLIP's 512 and the MV
    network's 1280 dimensions), as train_head runs it on the CPU: seconds an epoch a seed;
    the fusion head with a fresh MV matrix an epoch (the paper's draws)."""
    from moclip.heads import HeadSettings, fit_head

    parts = info["parts"]
    dims = {"clip_linear": [512], "fusion": [512, 1280]}
    g = torch.Generator().manual_seed(0)
    out = {}
    for preset in ("ucf101", "ucf101-paper"):
        cfg = preset_config(preset)["heads"]
        known = {k: v for k, v in cfg.items() if k in HeadSettings.__dataclass_fields__}
        s = HeadSettings.from_config({**known, "epochs": fs.head_epochs})
        rec = {}
        for head, d in dims.items():
            x_tr = torch.randn(parts["train"], sum(d), generator=g)
            y_tr = torch.randint(0, fs.classes, (parts["train"],), generator=g)
            x_va = torch.randn(parts["val"], sum(d), generator=g)
            y_va = torch.randint(0, fs.classes, (parts["val"],), generator=g)
            draws = head == "fusion" and s.mv_draws
            x = (lambda e, x=x_tr: x + 0.01 * e) if draws else x_tr  # a new matrix an epoch
            t0 = time.perf_counter()
            fit_head(head, d, fs.classes, s, 0, x, y_tr, x_va, y_va)
            rec[head] = {"epoch_s": (time.perf_counter() - t0) / s.epochs, "draws": bool(draws)}
        out[preset] = {"seeds": len(cfg.get("seeds", [0])), "epochs": cfg["epochs"], "heads": rec}
    return out


_TRAIN_PROBE = r"""
import json, sys, time
args = json.loads(sys.argv[1])
import torch
from moclip.runtime import use_threads
use_threads(args["threads"])
from moclip.mv.data import MVItem, MVSettings
from moclip.mv.train import fit_mvnet
items = [MVItem(v, p, y) for v, p, y in args["items"]]
s = MVSettings.from_config(args["settings"])
if args["device"] == "cuda":
    torch.zeros(1, device="cuda")  # the CUDA context before the barrier
from pathlib import Path
barrier = Path(args["barrier"])
(barrier / f"ready-{args['rank']}").touch()
while len(list(barrier.glob("ready-*"))) < args["n"]:  # every training starts together
    time.sleep(0.005)
t0 = time.time()
r = fit_mvnet(items, [], args["classes"], s, workers=args["workers"], device=args["device"])
end = time.time()
print(json.dumps({"start": t0, "end": end, "history": r.history, "precision": r.precision}))
"""


def part_concurrent(fs: FullSizes, dev: torch.device, info: dict, tmp: Path) -> dict:
    """``concurrent`` trainings on the one card at once against one alone, each in its own
    process (as jobs sharing a card), config/ucf101.yaml's loader (per-frame vectors: the
    card, not the loader, is what they share), started together past a barrier: each
    one's segments/s in its last epoch and their sum (``last_epochs_overlap_share``: how
    much those epochs ran at the same time), and the wall-clock aggregate."""
    items = full_items(fs, Path(info["root"]))["train"][: fs.concurrent_videos]
    s = _preset_mv("ucf101", fs, epochs=fs.concurrent_epochs, milestones=[fs.concurrent_epochs])
    threads = 1  # the main process of each only feeds the card; its workers read
    args = {
        "items": [(it.video_id, str(it.path), it.label) for it in items],
        "settings": asdict(s),
        "classes": fs.classes,
        "workers": fs.concurrent_workers,
        "device": "cuda" if dev.type == "cuda" else "cpu",
        "threads": threads,
    }
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "MOCLIP_JOBS_PER_CARD": str(fs.concurrent),  # gpu.jobs_per_card: each claims a slot of the card
    }
    seg = len(items) * s.segments

    def run(n: int) -> list[dict]:
        barrier = Path(tempfile.mkdtemp(prefix="barrier-", dir=tmp))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _TRAIN_PROBE, json.dumps({**args, "barrier": str(barrier), "n": n, "rank": k})],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for k in range(n)
        ]
        try:
            outs = [p.communicate() for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        for p, (_, e) in zip(procs, outs):
            if p.returncode != 0:
                raise RuntimeError(f"a training process failed ({p.returncode}):\n{e[-3000:]}")
        recs = []
        for o, _ in outs:
            r = json.loads(o.strip().splitlines()[-1])
            last = r["history"][-1]
            wait = last["data_wait"] / last["seconds"]
            recs.append({"start": r["start"], "end": r["end"], "last_s": last["seconds"], "data_wait_share": wait})
        return recs

    work = s.epochs * seg  # segments a training, every epoch (the first pays its workers' start)
    solo = run(1)[0]
    many = run(fs.concurrent)
    solo_rate = seg / solo["last_s"]
    rates = [seg / r["last_s"] for r in many]
    begin = max(r["end"] - r["last_s"] for r in many)  # every training in its last epoch from here ...
    finish = min(r["end"] for r in many)  # ... to here
    span = max(r["end"] for r in many) - min(r["start"] for r in many)
    return {
        "preset": "ucf101",
        "trainings": fs.concurrent,
        "videos_each": len(items),
        "epochs_each": s.epochs,
        "workers_each": fs.concurrent_workers,
        "solo_segments_per_s": solo_rate,
        "solo_data_wait_share": solo["data_wait_share"],
        "each_segments_per_s": rates,
        "each_data_wait_share": [r["data_wait_share"] for r in many],
        "aggregate_segments_per_s": sum(rates),
        "aggregate_over_solo": sum(rates) / solo_rate,
        "last_epochs_overlap_share": max(0.0, finish - begin) / statistics.mean(r["last_s"] for r in many),
        "wall_aggregate_segments_per_s": fs.concurrent * work / span,  # first start to last end, builds included
        "wall_solo_segments_per_s": work / (solo["end"] - solo["start"]),
        "start_spread_s": max(r["start"] for r in many) - min(r["start"] for r in many),
    }


# UCF101's three splits, as each preset's workflow runs them (config/*.yaml): the counts a
# projection multiplies the measured rates by.
UCF101_VIDEOS = 13_320
UCF101_SPLITS = 3
GPU_JOBS = {"clip_embed": 1, "train_mvnet": 3, "mv_features": 3}  # a job a split for the MV network
STARTUP_S = 15.0  # a GPU job's start-up where the startup part did not run: the 2026-12-04 H200 check's


def full_projection(report: dict) -> dict:
    """The three splits of UCF101 on one card for both presets from this run's own rates:
    each stage's hours and the total, nothing left out (the paper's 25 x 10 test views and
    100 draws a training video, validation every epoch, every job's start-up, the heads on
    the CPU counted serially after the card's work). Also the total with the three
    trainings sharing the card at the measured aggregate rate. None where a rate is missing."""
    p = report["parts"]
    get = lambda *keys: _dig(p, keys)  # noqa: E731
    parts = get("full_set", "parts")
    scale = UCF101_VIDEOS / max(1, get("full_set", "spec", "videos") or UCF101_VIDEOS)
    out = {}
    for preset in ("ucf101", "ucf101-paper"):
        cfg = preset_config(preset)
        mv, heads = cfg["mvnet"], cfg["heads"]
        n_train, n_val = (parts["train"] * scale, parts["val"] * scale) if parts else (None, None)
        paper_rate = get("full_mv_train", "segments_per_s")
        rate = paper_rate if preset == "ucf101-paper" else get("concurrent", "solo_segments_per_s")
        rate_note = (
            "" if preset == "ucf101-paper" or rate else "training at the paper loader's rate (concurrent missing)"
        )
        rate = rate or paper_rate
        val_video = get("full_mv_train", "val_s_per_video")
        feat = get("full_mv_features", preset, "inputs_per_s")
        draw = get("full_mv_features", "ucf101-paper", "draws", "segments_per_s")
        clip_vps = get("full_clip", "videos_per_s")
        starts = get("startup") or {}
        measured = {r: (starts.get(r) or {}).get("startup_s") for r in GPU_JOBS}
        startup = {r: v or STARTUP_S for r, v in measured.items()}
        need = dict(train=rate, val=val_video, features=feat, clip=clip_vps, split=n_train)
        if preset == "ucf101-paper" and heads["mv_draws"]:
            need["draws"] = draw
        heads_rec = get("full_heads", preset)
        missing = [k for k, v in need.items() if v is None] + ([] if heads_rec else ["heads"])
        if missing:
            out[preset] = {"missing": missing}
            continue
        h = {
            "train_mvnet": mv["epochs"] * (n_train * mv["segments"] / rate + n_val * val_video) * UCF101_SPLITS,
            "mv_features": UCF101_VIDEOS * mv["eval_segments"] * mv["eval_crops"] / feat * UCF101_SPLITS,
            "mv_draws": (heads["mv_draws"] * n_train * mv["segments"] / draw * UCF101_SPLITS)
            if heads["mv_draws"]
            else 0.0,
            "clip_embed": UCF101_VIDEOS / clip_vps,  # at 8 frames a video: an upper bound for the paper's one
            "startups": sum(n * startup[r] for r, n in GPU_JOBS.items()),
        }
        epochs = heads["epochs"]
        h["heads_cpu"] = (
            sum(r["epoch_s"] for r in heads_rec["heads"].values()) * epochs * len(heads["seeds"]) * UCF101_SPLITS
        )
        hours = {k: v / 3600 for k, v in h.items()}
        total = sum(hours.values())
        share = get("concurrent", "aggregate_over_solo")
        shared = None
        if share:
            shared = total - hours["train_mvnet"] + hours["train_mvnet"] / max(1.0, share)
        out[preset] = {
            "hours": hours,
            "total_h": total,
            "total_h_trainings_sharing_the_card": shared,
            "goal_h": 1.5 if preset == "ucf101" else 2.0,
            "counts": {
                "train_videos_a_split": n_train,
                "val_videos_a_split": n_val,
                "epochs": mv["epochs"],
                "segments": mv["segments"],
                "feature_views": mv["eval_segments"] * mv["eval_crops"],
                "draws": heads["mv_draws"],
                "head_epochs": epochs,
                "seeds": len(heads["seeds"]),
            },
            "rates": {
                "train_segments_per_s": rate,
                "val_s_per_video": val_video,
                "feature_inputs_per_s": feat,
                "draw_segments_per_s": draw,
                "clip_videos_per_s": clip_vps,
                "job_startup_s": startup,
                "job_startup_measured": all(measured.values()),
            },
            "assumptions": [
                "validation's time a video from the paper preset's loader (config/ucf101.yaml's reads less)",
                "CLIP at 8 frames a video (the paper preset's 1 frame costs less)",
                "the heads on the CPU after the card's work, one at a time",
                "a head epoch with draws: a new matrix in memory (the workflow reads it from the shards)",
                *([rate_note] if rate_note else []),
            ],
        }
    return out


# --------------------------------------------------------------------------- the run


def device_info(dev: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "date": datetime.date.today().isoformat(),
    }
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info.update(
            name=p.name,
            capability=f"{p.major}.{p.minor}",
            memory_gb=round(p.total_memory / 2**30, 1),
            multiprocessors=p.multi_processor_count,
            cuda_runtime=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
        try:
            drv = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
            )
            info["driver"] = drv.stdout.strip()
        except OSError:
            pass
    else:
        info["name"] = f"CPU ({platform.machine()}), rehearsal"
    return info


def summary(report: dict) -> dict:
    """The top-level keys the README and the resource model read."""
    parts = report["parts"]
    get = lambda *keys: _dig(parts, keys)  # noqa: E731
    clip_rows = get("clip", "rows") or []
    mv_rows = get("mv_train", "rows") or []
    jobs = get("demo", "jobs") or {}
    startup = {r: get("startup", r, "startup_s") for r in GPU_RULES}
    return {
        "clip_stage_over_bare": {str(r["batch_videos"]) + f"x{r['workers']}w": r["stage_over_bare"] for r in clip_rows},
        "jpeg_decode_images_per_s": {
            k.removesuffix("_images_per_s"): v for k, v in (get("clip", "decode") or {}).items() if "per_s" in k
        },
        "mv_train_samples_per_s": {str(r["workers"]): r["samples_per_s"] for r in mv_rows},
        "mv_data_wait_share": {str(r["workers"]): r["data_wait_share"] for r in mv_rows},
        "mv_features_videos_per_s": {str(r["workers"]): r["videos_per_s"] for r in get("mv_features", "rows") or []},
        "job_startup_s": startup,
        "demo_job_startup_s": {r: (j["startup_s"] or [None])[0] for r, j in jobs.items()},
        "demo_matches_cpu": get("demo", "matches_cpu"),
        **full_summary(report),
    }


def full_summary(report: dict) -> dict:
    """The full-size run's headline numbers, each goal of issue 32 met or not, and the projection."""
    get = lambda *keys: _dig(report["parts"], keys)  # noqa: E731
    name = report["device"].get("name", "")
    card = "H200" if "H200" in name else "H100"
    proj = full_projection(report)
    mv_rate, wait = get("full_mv_train", "segments_per_s"), get("full_mv_train", "data_wait_share")
    ratio, grey = get("full_clip", "stage_over_bare"), get("nvjpeg", "mean_abs_grey")
    goals = {
        f"mv_train_segments_per_s>={2900 if card == 'H100' else 3300}": mv_rate
        and mv_rate >= (2900 if card == "H100" else 3300),
        "mv_data_wait<=0.10": wait is not None and wait <= 0.10,
        "clip_stage_over_bare>=0.8": ratio is not None and ratio >= 0.8,
        "nvjpeg_mean_abs_grey<=1.5": grey is not None and grey <= 1.5,
        "ucf101_three_splits<=1.5h": _dig(proj, ("ucf101", "total_h")) is not None and proj["ucf101"]["total_h"] <= 1.5,
        "paper_three_splits<=2h": _dig(proj, ("ucf101-paper", "total_h")) is not None
        and proj["ucf101-paper"]["total_h"] <= 2.0,
    }
    return {
        "full_clip_stage_over_bare": ratio,
        "full_clip_bare_images_per_s": get("full_clip", "bare_images_per_s"),
        "full_mv_train_segments_per_s": mv_rate,
        "full_mv_data_wait_share": wait,
        "bare_mv_train_segments_per_s": get("bare_mv", "train_segments_per_s"),
        "bare_mv_feature_inputs_per_s": get("bare_mv", "feature_inputs_per_s"),
        "deterministic_cost_share": get("deterministic", "cost_share"),
        "concurrent_aggregate_over_solo": get("concurrent", "aggregate_over_solo"),
        "nvjpeg_mean_abs_grey": grey,
        "nvjpeg_cosine_min": get("nvjpeg", "cosine_min"),
        "goals": {k: bool(v) for k, v in goals.items()},
        "full_projection": proj,
    }


def _dig(d, keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def print_table(report: dict) -> None:
    p = report["parts"]
    print(f"\n## gpu-check: {report['device'].get('name')} (cuda: {report['cuda']})")
    for name, part in p.items():
        status = "error: " + part["error"].splitlines()[-1] if "error" in part else "ok"
        print(f"{name:12s} {part.get('seconds', 0):7.1f} s  {status}")
    if "checks" in p.get("demo", {}):
        print("demo GPU vs CPU:", ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in p["demo"]["checks"].items()))
        for m, r in p["demo"]["methods"].items():
            print(f"  {m:12s} top-1 gpu {np.mean(r['top1_gpu']):.3f} cpu {np.mean(r['top1_cpu']):.3f}", end="")
            print(f", agreement {r['agreement_min']:.3f}" if r["agreement_min"] is not None else "")
    for r in _dig(p, ("clip", "rows")) or []:
        print(
            f"clip  batch {r['batch_images']:4d} img, {r['workers']} workers: stage {r['stage_images_per_s']:8.0f}"
            f" img/s, bare {r['bare_images_per_s']:8.0f}, ratio {r['stage_over_bare']:.2f}, peak {r['peak_gpu_mb']} MB"
        )
    d = _dig(p, ("clip", "decode")) or {}
    if "device_images_per_s" in d:
        print(
            f"jpeg decode, {d['batch_videos']} videos a call: device {d['device_images_per_s']:8.0f} img/s, "
            f"one CPU thread {d['cpu_images_per_s']:8.0f} img/s"
        )
    for r in _dig(p, ("mv_train", "rows")) or []:
        print(
            f"mv train {r['workers']} workers: {r['samples_per_s']:8.1f} samples/s, "
            f"{100 * r['data_wait_share']:.1f}% waiting for data, peak {r['peak_gpu_mb']} MB"
        )
    for r in _dig(p, ("mv_features", "rows")) or []:
        print(f"mv features {r['workers']} workers: {r['videos_per_s']:.1f} videos/s, peak {r['peak_gpu_mb']} MB")
    print_full(report)
    for stage in GPU_RULES:
        r = _dig(p, ("startup", stage))
        if r:
            print(f"start-up {stage:12s} {r['startup_s']} s, host peak {r['vmhwm_mb']:.0f} MB, gpu {r['peak_gpu_mb']}")


DEMO_PARTS = ("demo", "clip", "mv_features", "mv_train", "startup", "fp16")
PLANS = {"full": FULL_PARTS, "demo": DEMO_PARTS, "all": FULL_PARTS + DEMO_PARTS}
TOTAL_BUDGET_S = 480  # the full plan on the card: a part that would start past it is skipped


def print_full(report: dict) -> None:
    """The full-size run's lines: each stage against its ceiling, the checks, the projection."""
    p = report["parts"]
    if not any(name in p for name in FULL_PARTS):
        return
    fmt = lambda v, f="{:.0f}": "-" if v is None else f.format(v)  # noqa: E731
    s = _dig(p, ("full_set",)) or {}
    if "spec" in s:
        print(
            f"full-size set: {s['spec']['videos']} videos {s['spec']['width']}x{s['spec']['height']}, "
            f"{s['bytes'] / 2**30:.2f} GiB, {s['seconds']:.0f} s{' (reused)' if s['reused'] else ''}, "
            f"split 1 {s['parts']}"
        )
    c = _dig(p, ("full_clip",)) or {}
    for r in c.get("rows", []):
        if "skipped" in r:
            print(f"clip stage {r['workers']} workers: skipped ({r['skipped']})")
            continue
        print(
            f"clip stage {r['workers']} workers, {r['videos']} videos: steady {r['steady_images_per_s']:8.0f} img/s "
            f"(with the fill {r['images_per_s']:.0f}), first batch {r['first_batch_s']:.1f} s, "
            f"peak {fmt(r['peak_gpu_mb'])} MB"
        )
    if "bare_images_per_s" in c:
        print(
            f"clip bare encode_image at {c['batch_images']}: {c['bare_images_per_s']:8.0f} img/s; stage/bare "
            f"{c['stage_over_bare']:.2f} (goal 0.8); serialised check cosine min "
            f"{c['serialised_check']['cosine_min']:.5f}"
        )
    j = _dig(p, ("nvjpeg",)) or {}
    if j.get("mean_abs_grey") is not None:
        print(
            f"nvjpeg vs cpu, {j['frames']} frames: mean |diff| {j['mean_abs_grey']:.3f} grey levels "
            f"(max {j['max_abs_grey']}), "
            f"CLIP cosine mean {j['cosine_mean']:.5f} min {j['cosine_min']:.5f}"
        )
    t = _dig(p, ("full_mv_train",)) or {}
    if "segments_per_s" in t:
        print(
            f"mv train (paper loader, {t['workers']} workers, {t['train_videos']} videos): {t['segments_per_s']:.0f} "
            f"segments/s, {100 * t['data_wait_share']:.0f}% waiting for data, "
            f"validation {t['val_s_per_epoch']:.1f} s an epoch"
        )
    b = _dig(p, ("bare_mv",)) or {}
    if b:
        print(
            f"mv bare: train step {fmt(b.get('train_segments_per_s'))} segments/s, "
            f"features {fmt(b.get('feature_inputs_per_s'))} inputs/s"
        )
    d = _dig(p, ("deterministic",)) or {}
    if "cost_share" in d:
        print(
            f"deterministic on/off: {d['on']['train_segments_per_s']:.0f} / {d['off']['train_segments_per_s']:.0f} "
            f"segments/s, cost {100 * d['cost_share']:.1f}% ({'keep the default' if d['keep_default'] else 'over 15%'})"
        )
    f = _dig(p, ("full_mv_features",)) or {}
    for preset in ("ucf101-paper", "ucf101"):
        r = f.get(preset)
        if r:
            dr = r.get("draws")
            print(
                f"mv features {preset} {r['views']}: {r['videos_per_s']:.1f} videos/s, {r['inputs_per_s']:.0f} inputs/s"
                + (f"; draws {dr['segments_per_s']:.0f} segments/s" if dr else "")
            )
    k = _dig(p, ("concurrent",)) or {}
    if "aggregate_segments_per_s" in k:
        print(
            f"{k['trainings']} trainings at once: {k['aggregate_segments_per_s']:.0f} segments/s together against "
            f"{k['solo_segments_per_s']:.0f} alone ({k['aggregate_over_solo']:.2f}x, "
            f"last epochs overlapping {k['last_epochs_overlap_share']:.2f})"
        )
    for preset, r in (report.get("full_projection") or {}).items():
        if "missing" in r:
            print(f"projection {preset}: missing {', '.join(r['missing'])}")
            continue
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r["hours"].items())
        shared = r["total_h_trainings_sharing_the_card"]
        print(
            f"projection {preset}, three splits on one card: {r['total_h']:.2f} h (goal {r['goal_h']} h)"
            f"{'' if shared is None else f'; trainings sharing the card {shared:.2f} h'}: {parts}"
        )
    goals = report.get("goals") or {}
    if goals:
        print("goals:", ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in goals.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gpu-check.json", help="the JSON written (and rewritten after each part)")
    ap.add_argument("--rehearsal", action="store_true", help="tiny sizes on the CPU even where CUDA is available")
    ap.add_argument("--cores", type=int, default=os.cpu_count(), help="cores for the demo runs and making the set")
    # Most telling first (a run cut short keeps them); mv_train turns on the deterministic
    # settings in this process, as train_mvnet does: the inference parts come before it.
    ap.add_argument("--plan", choices=sorted(PLANS), default="full", help="full: the full-size run; demo: the demo's")
    ap.add_argument("--parts", nargs="+", choices=sorted(PLANS["all"]), help="these parts only (a rerun)")
    ap.add_argument("--budget-s", type=float, default=TOTAL_BUDGET_S, help="skip a part that would start past this")
    ap.add_argument("--set-dir", help="the full-size set's folder, kept and reused (default: under the temp dir)")
    ap.add_argument("--keep", help="keep the working files in this directory")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cuda = torch.cuda.is_available() and not a.rehearsal
    dev = torch.device("cuda", 0) if cuda else torch.device("cpu")
    sizes, fs = (GPU, FULL) if cuda else (REHEARSAL, FULL_REHEARSAL)
    report = {"cuda": cuda, "device": device_info(dev), "sizes": asdict(sizes), "full_sizes": asdict(fs), "parts": {}}
    out = Path(a.out).resolve()
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="gpu-check-"))
    tmp.mkdir(parents=True, exist_ok=True)
    kept = Path(tempfile.gettempdir()) / "moclip-gpu-check-set"  # a rerun on the same machine reuses it
    set_dir = Path(a.set_dir) if a.set_dir else kept if cuda else tmp / "full-set"
    got = report["parts"]
    parts = {
        "demo": lambda: part_demo(sizes, dev, tmp, a.cores),
        "fp16": lambda: part_fp16(sizes, dev, got["demo"]),
        "clip": lambda: part_clip(sizes, dev, got["demo"], tmp),
        "mv_train": lambda: part_mv_train(sizes, dev, got["demo"]),
        "mv_features": lambda: part_mv_features(sizes, dev, got["demo"], tmp),
        "startup": lambda: part_startup(sizes, dev, got["demo"], tmp),
        "full_set": lambda: full_set(fs, set_dir, a.cores),
        "full_clip": lambda: part_full_clip(fs, dev, got["full_set"], tmp, fs.budget_s["full_clip"]),
        "nvjpeg": lambda: part_nvjpeg(fs, dev, got["full_set"]),
        "full_mv_train": lambda: part_full_mv_train(fs, dev, got["full_set"]),
        "bare_mv": lambda: part_bare_mv(fs, dev),
        "deterministic": lambda: part_deterministic(fs, dev),
        "compile": lambda: part_compile(fs, dev),
        "full_mv_features": lambda: part_full_mv_features(fs, dev, got["full_set"], tmp),
        "concurrent": lambda: part_concurrent(fs, dev, got["full_set"], tmp),
        "full_heads": lambda: part_full_heads(fs, got["full_set"]),
    }
    if a.parts and any(p.startswith("full_") or p in FULL_PARTS for p in a.parts) and "full_set" not in a.parts:
        a.parts.insert(0, "full_set")  # reused when made before: the other full-size parts read it
    threads = torch.get_num_threads()
    began = time.perf_counter()
    try:
        for name in a.parts or PLANS[a.plan]:
            t0 = time.perf_counter()
            box = fs.budget_s.get(name)
            if box and cuda and t0 - began + box > a.budget_s:
                got[name] = {"skipped": f"the total budget ({a.budget_s:.0f} s) would be passed", "seconds": 0.0}
                print(f"[gpu-check] {name}: skipped (total budget)", flush=True)
                continue
            print(f"[gpu-check] {name} ...", flush=True)
            # The rehearsal's full-size parts on one thread: loader workers and probes beside it never oversubscribe.
            torch.set_num_threads(1 if box and not cuda else threads)
            got[name] = result = run_part(parts[name], box)
            report.update(summary(report))
            out.write_text(json.dumps(report, indent=1, default=str))
            print(f"[gpu-check] {name}: {result['seconds']:.1f} s{' (error)' if 'error' in result else ''}", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(report)
    race = _dig(got, ("full_clip", "serialised_check", "same")) is False  # the stage's embeddings off the serial ones
    ok = all("error" not in p for p in got.values()) and report.get("demo_matches_cpu") is not False and not race
    print(f"\nwrote {out}: {'every part ran' if ok else 'FAILURES: see the errors above'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
