"""Dense-stage benchmark: one long synthetic untrimmed video (320x240, 25 fps, MPEG-4 Part 2
in AVI, actions at known times) through the dense stage (``moclip.dense.dense``: one decode
pass, one-second windows, CLIP of each centre frame and the MV network over each window's
motion), in a process of its own for its peak RSS, against a bare loop over the same video
(PyAV decode with MV export, ``to_ndarray()`` a frame: the least any MV reader must do).
Goal: peak RSS < 1.5 GB on a two-hour video, whatever its length (the stage streams).

Usage: python benchmarks/bench_dense.py [--minutes 120] [--every 1.0] [--clip-model moclip-tiny]
                                        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]


def child(video: Path, manifest: Path, out: Path, every: float, model: str, threads: int) -> dict:
    """The dense stage on ``video`` (this process: its peak RSS is the stage's), an untrained
    tiny MV network (seeded) and ``model``'s CLIP with random weights."""
    import torch

    from moclip.clip.stream import ClipSettings
    from moclip.dense import DenseSettings, dense, read_dense
    from moclip.mv.data import MVSettings
    from moclip.mv.nets import MVNet
    from moclip.mv.train import TrainResult, save_checkpoint

    torch.manual_seed(0)
    s = MVSettings()
    net = out.with_suffix(".pt")
    save_checkpoint(net, TrainResult(MVNet(s.arch, 3).state_dict(), 0, []), s, 3, 1)
    t0 = time.perf_counter()
    dense(
        videos=[video],
        manifest=manifest,
        model=net,
        out=out,
        videos_root=video.parent,
        settings=DenseSettings(every_s=every, window_s=every),
        clip=ClipSettings(model=model, cpu_threads=threads),
        device="cpu",
        threads=threads,
    )
    seconds = time.perf_counter() - t0
    (v,) = read_dense(out).videos
    return {
        "seconds": seconds,
        "windows": len(v.start),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def bare_loop(path: Path) -> tuple[int, float]:
    """(frames, seconds) of a PyAV decode of ``path`` with MV export, one thread."""
    t0 = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        s.codec_context.options = {"flags2": "+export_mvs"}
        for frame in c.decode(s):
            sd = frame.side_data.get(av.sidedata.sidedata.Type.MOTION_VECTORS)
            if sd is not None:
                sd.to_ndarray()
            n += 1
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=120)
    ap.add_argument("--every", type=float, default=1.0, help="seconds a window (and between windows)")
    ap.add_argument("--clip-model", default="moclip-tiny", help="e.g. ViT-B-32 for the real model's cost")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="a folder to write (or reuse) the video in")
    ap.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    if a.child:
        print(json.dumps(child(*a.child, a.every, a.clip_model, a.threads)))
        return
    from moclip.dataset.untrimmed import demo_actions, write_untrimmed

    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        video = root / f"long-{a.minutes:g}min.avi"
        seconds = a.minutes * 60
        if not video.exists():
            t0 = time.perf_counter()
            write_untrimmed(video, seconds, demo_actions(seconds, max(1, int(a.minutes)), seed=0))
            print(f"wrote {video.name}: {video.stat().st_size / 2**20:.0f} MB in {time.perf_counter() - t0:.0f} s")
        manifest = Path(tmp) / "manifest.tsv"
        manifest.write_text(f"video_id\tpath\n{video.stem}\t{video.name}\n")
        frames, bare_s = bare_loop(video)
        video_mb = video.stat().st_size / 2**20
        cmd = [sys.executable, __file__, "--child", str(video), str(manifest), str(Path(tmp) / "dense.h5")]
        cmd += ["--every", str(a.every), "--clip-model", a.clip_model, "--threads", str(a.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if out.returncode:
            sys.exit(out.stderr)
        stage = json.loads(out.stdout.strip().splitlines()[-1])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "video_minutes": a.minutes,
        "frames": frames,
        "video_mb": round(video_mb, 1),
        "clip_model": a.clip_model,
        "threads": a.threads,
        "windows": stage["windows"],
        "dense_seconds": round(stage["seconds"], 1),
        "dense_windows_a_second": round(stage["windows"] / stage["seconds"], 1),
        "dense_frames_a_second": round(frames / stage["seconds"]),
        "bare_decode_mv_frames_a_second": round(frames / bare_s),
        "ratio_dense_to_bare": round(bare_s / stage["seconds"], 3),
        "dense_peak_rss_mb": round(peak),
        "seconds_a_video_hour": round(stage["seconds"] / (a.minutes / 60)),
    }
    print(json.dumps(result, indent=2))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
