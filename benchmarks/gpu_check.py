"""The prepared check of the GPU path, one command (``make gpu-check``) for a lent GPU.

On a machine with CUDA it runs, in this order, each part on its own (a part that fails is
recorded with its error and the others still run; the JSON is rewritten after each part,
so a run cut short keeps what it measured):

1. ``demo``: the demo workflow end to end with ``clip.device`` and ``mvnet.device`` cuda
   (the real CUDA code paths), beside a CPU run of the same config that shares its caches;
   then every CLIP and MV feature shard (same videos, cosine of each row) and every
   method's predictions and top-1 compared, and each GPU job's start-up read from its log.
2. ``fp16``: a short MV training forced to float16 with the gradient scaler (an H200
   picks bfloat16), and two identical trainings of EfficientNet-B0 on the card compared
   bit for bit (the deterministic settings of moclip.runtime.make_deterministic);
   ``predict`` on the card against the CPU on the demo's test videos.
3. ``clip``: the CLIP stage against bare ``encode_image`` on the same images, ViT-B-32
   (random weights), several batch sizes, alternating rounds: images/s, their ratio, peak
   GPU memory; and the demo's JPEG frames decoded on the card (nvJPEG, one call a batch, as
   the stage does) against one CPU thread: images/s.
4. ``mv_train``: EfficientNet-B0 at 224 px, batch 80 x 3 segments, the paper preset's
   augmentation, with 1, 4 and 8 loader workers: samples/s and the share of time waiting
   for data; peak GPU memory.
5. ``mv_features``: EfficientNet-B0 features at 25 x 10 views: videos/s, peak GPU memory.
6. ``startup``: each GPU stage's entry point with the real architecture in a fresh
   process: process start to first batch, host peak memory (VmHWM), GPU peak.

Without CUDA it runs the same code as a CPU rehearsal at tiny sizes (``cuda: false``), so
that the command cannot rot before a GPU is lent: ``tests/test_gpu_check.py`` runs it.

Writes ``gpu-check.json`` (``--out``) and prints a table. Exit status 0 when every part
ran and the GPU outputs match the CPU's; 1 otherwise.

Usage: python benchmarks/gpu_check.py [--out gpu-check.json] [--rehearsal] [--cores N]
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
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

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
        "dataset": {"shards": 2},
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
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "check-config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--workflow-profile", str(REPO / "profiles" / "default"), "--configfile", str(cfg)]
    cmd += ["--cores", str(cores), *args]
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=workdir)  # noqa: SIM115


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
    from moclip.mv_data import mv_items
    from moclip.videos import class_names, read_manifest, split_rows

    res = workdir / "results"
    rows = read_manifest(res / "manifest.tsv")
    mv_dirs = sorted((res / "cache" / "mv").glob("shard-*"))
    parts = split_rows(rows, split)
    return mv_items(parts["train"], mv_dirs), mv_items(parts["val"], mv_dirs), len(class_names(rows))


def part_fp16(sizes: Sizes, dev: torch.device, demo: dict) -> dict:
    from moclip.mv_data import MVSettings
    from moclip.mv_train import fit_mvnet

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
    from moclip.predict import Predictor
    from moclip.videos import read_manifest

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
    from moclip.clip_stream import embed_frame_caches, load_clip
    from moclip.runtime import autocast, autocast_dtype

    res = Path(demo["workdir"]) / "results"
    files = sorted((res / "cache" / "frames").rglob("*.h5"))
    files = (files * (sizes.clip_videos // len(files) + 1))[: sizes.clip_videos]
    ids = [f"v{i}" for i in range(len(files))]
    clip = load_clip(sizes.clip_model, "none", device=str(dev))
    amp = autocast_dtype(dev)
    from moclip.frames import read_frames

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
    from moclip.cache import open_cache
    from moclip.frames import decode_frames, stored_frames

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
    from moclip.mv_data import MVSettings
    from moclip.mv_train import fit_mvnet

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
    from moclip.mv_data import MVSettings
    from moclip.mv_nets import MVNet
    from moclip.mv_stream import extract_features

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
    from moclip.clip_stream import ClipSettings, clip_embed
    kw = dict(args["kw"]); kw["settings"] = ClipSettings.from_config(kw["settings"])
    clip_embed(**kw)
elif stage == "train_mvnet":
    from moclip.mv_data import MVSettings
    from moclip.mv_stream import train_mvnet
    kw = dict(args["kw"]); kw["settings"] = MVSettings.from_config(kw["settings"])
    train_mvnet(**kw)
else:
    from moclip.mv_stream import mv_features
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
    for stage in GPU_RULES:
        r = _dig(p, ("startup", stage))
        if r:
            print(f"start-up {stage:12s} {r['startup_s']} s, host peak {r['vmhwm_mb']:.0f} MB, gpu {r['peak_gpu_mb']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gpu-check.json", help="the JSON written (and rewritten after each part)")
    ap.add_argument("--rehearsal", action="store_true", help="tiny sizes on the CPU even where CUDA is available")
    ap.add_argument("--cores", type=int, default=os.cpu_count(), help="cores for the demo workflow runs")
    # Most telling first (a run cut short keeps them); mv_train turns on the deterministic
    # settings in this process, as train_mvnet does: the inference parts come before it.
    ap.add_argument("--parts", nargs="+", default=["demo", "clip", "mv_features", "mv_train", "startup", "fp16"])
    ap.add_argument("--keep", help="keep the working files in this directory")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cuda = torch.cuda.is_available() and not a.rehearsal
    dev = torch.device("cuda", 0) if cuda else torch.device("cpu")
    sizes = GPU if cuda else REHEARSAL
    report = {"cuda": cuda, "device": device_info(dev), "sizes": asdict(sizes), "parts": {}}
    out = Path(a.out).resolve()
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="gpu-check-"))
    tmp.mkdir(parents=True, exist_ok=True)
    parts = {
        "demo": lambda: part_demo(sizes, dev, tmp, a.cores),
        "fp16": lambda: part_fp16(sizes, dev, report["parts"]["demo"]),
        "clip": lambda: part_clip(sizes, dev, report["parts"]["demo"], tmp),
        "mv_train": lambda: part_mv_train(sizes, dev, report["parts"]["demo"]),
        "mv_features": lambda: part_mv_features(sizes, dev, report["parts"]["demo"], tmp),
        "startup": lambda: part_startup(sizes, dev, report["parts"]["demo"], tmp),
    }
    try:
        for name in a.parts:
            t0 = time.perf_counter()
            print(f"[gpu-check] {name} ...", flush=True)
            try:
                result = parts[name]()
            except Exception:
                result = {"error": traceback.format_exc()}
            result["seconds"] = time.perf_counter() - t0
            report["parts"][name] = result
            report.update(summary(report))
            out.write_text(json.dumps(report, indent=1, default=str))
            print(f"[gpu-check] {name}: {result['seconds']:.1f} s{' (error)' if 'error' in result else ''}", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(report)
    ok = all("error" not in p for p in report["parts"].values()) and report.get("demo_matches_cpu") is not False
    print(f"\nwrote {out}: {'every part ran' if ok else 'FAILURES: see the errors above'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
