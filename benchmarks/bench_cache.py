"""Cache-stage benchmark: everything measured side by side in one run, printed as ratios.

1. One process, the same UCF101-like videos (320x240, 25 fps, MPEG-4 Part 2 in AVI):
   bare PyAV decode, bare decode + motion-vector export (``to_ndarray()``: the least work
   any MV cache must do), and our ``cache_video`` (MVs + frames + HDF5). Goal: >= 0.7.
2. ``snakemake --cores 2 caches`` wall time against the in-process loop over the same
   videos with 2 processes. Goal: <= 1.3.
3. Peak memory of one cache job on a long video. Goal: < 1 GB.

Usage: python benchmarks/bench_cache.py [--videos 768] [--distinct 27] [--frames 180] [--shard-size 256]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from moclip.cache import cache_shard, cache_video
from moclip.codec import DecodeSettings, encode_video
from moclip.demo import DemoSpec, make_demo_dataset, render_clip

REPO = Path(__file__).resolve().parents[1]


def bare_decode(paths: list[Path], export_mvs: bool) -> int:
    n = 0
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = 1
            if export_mvs:
                s.codec_context.options = {"flags2": "+export_mvs"}
            for frame in c.decode(s):
                if export_mvs:
                    sd = frame.side_data.get(av.sidedata.sidedata.Type.MOTION_VECTORS)
                    if sd is not None:
                        sd.to_ndarray()
                n += 1
    return n


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def per_process(paths: list[Path], out: Path) -> dict[str, float]:
    frames = bare_decode(paths, False)
    settings = DecodeSettings()

    def ours():
        for i, p in enumerate(paths):
            cache_video(p, p.stem, out / "mv" / f"{i}.h5", out / "fr" / f"{i}.h5", settings)

    t_plain = best_of(lambda: bare_decode(paths, False))
    t_mv = best_of(lambda: bare_decode(paths, True))
    t_ours = best_of(ours)
    return {"frames": frames, "plain": frames / t_plain, "mv": frames / t_mv, "ours": frames / t_ours}


def make_dataset(root: Path, n_videos: int, distinct: int, frames: int) -> tuple[Path, Path]:
    """A UCF101-layout dataset of ``n_videos`` clips; ``distinct`` are encoded, the rest are
    hard links (decoding cost is the same, generation is much faster)."""
    spec = DemoSpec(groups=max(4, -(-distinct // 9)), clips=1, frames=frames)
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    make_demo_dataset(videos, lists, spec, threads=2)
    src = sorted(videos.rglob("*.avi"))
    clips_per = -(-n_videos // len(src))
    train, test = [], []
    test_groups = {f"_g{g:02d}_" for g in spec.test_groups(1)}
    for p in src:
        cls = p.parent.name
        label = spec.classes().index(cls) + 1
        for c in range(2, clips_per + 1):
            q = p.with_name(p.name.replace("_c01.avi", f"_c{c:02d}.avi"))
            os.link(p, q)
            if any(g in q.name for g in test_groups):
                test.append(f"{cls}/{q.name}\r\n")
            else:
                train.append(f"{cls}/{q.name} {label}\r\n")
    with open(lists / "trainlist01.txt", "a", newline="") as f:
        f.writelines(train)
    with open(lists / "testlist01.txt", "a", newline="") as f:
        f.writelines(test)
    return videos, lists


def workflow_vs_loop(root: Path, videos: Path, lists: Path, shards: int) -> dict[str, float]:
    import yaml

    from moclip.manifest import build_manifest

    cfg = root / "bench.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": {"videos": str(videos), "lists": str(lists), "splits": [1],
                                               "shards": shards, "val_groups": 1}}))
    wd = root / "wf"
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(wd), "--configfile", str(cfg), "--cores", "2", "caches", "--quiet", "all"]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"snakemake failed:\n{out.stdout}\n{out.stderr}")
    t_wf = time.perf_counter() - t

    t = time.perf_counter()
    rows = build_manifest(videos, lists, [1], 1, shards, 0)
    cache_shard([(r.video_id, videos / r.path) for r in rows], root / "loop" / "mv", root / "loop" / "fr",
                root / "loop" / "index.tsv", DecodeSettings(), threads=2)
    t_loop = time.perf_counter() - t
    return {"videos": len(rows), "workflow": t_wf, "loop": t_loop}


def peak_memory(root: Path, frames: int) -> float:
    """Peak RSS (MB) of a fresh process caching one long video."""
    path = root / "long.avi"
    clip = render_clip(DemoSpec(frames=50), "Ball", "Shake", 1, 1)
    encode_video(path, (clip[i % 50] for i in range(frames)))
    code = (
        "import resource, sys; from moclip.cache import cache_video; from moclip.codec import DecodeSettings;"
        f"r = cache_video({str(path)!r}, 'long', {str(root / 'l_mv.h5')!r}, {str(root / 'l_fr.h5')!r}, DecodeSettings());"
        "assert r.status == 'ok', r; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=768, help="videos in the workflow comparison")
    ap.add_argument("--distinct", type=int, default=27, help="distinct encoded videos")
    ap.add_argument("--frames", type=int, default=180)
    ap.add_argument("--shard-size", type=int, default=256, help="videos a shard (UCF101: 13,320 in 52)")
    ap.add_argument("--long-frames", type=int, default=9000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        videos, lists = make_dataset(root / "data", a.videos, a.distinct, a.frames)
        print(f"# dataset: {a.videos} videos ({a.distinct} distinct), {a.frames} frames, 320x240 MPEG-4 Part 2 "
              f"in AVI ({time.perf_counter() - t:.0f} s to make)")
        distinct = sorted(videos.rglob("*_c01.avi"))
        r = per_process(distinct, root / "pp")
        print(f"\n## one process, {len(distinct)} videos, {r['frames']} frames (best of 3)")
        print(f"bare PyAV decode            {r['plain']:9.0f} frames/s")
        print(f"bare decode + MV export     {r['mv']:9.0f} frames/s")
        print(f"moclip cache_video          {r['ours']:9.0f} frames/s")
        print(f"ratio ours / bare MV export {r['ours'] / r['mv']:9.2f}   (goal >= 0.7)")
        shards = max(1, a.videos // a.shard_size)
        w = workflow_vs_loop(root, videos, lists, shards)
        print(f"\n## {w['videos']} videos in {shards} shards, 2 cores")
        print(f"snakemake --cores 2 caches  {w['workflow']:9.1f} s")
        print(f"in-process loop, 2 procs    {w['loop']:9.1f} s")
        print(f"ratio workflow / loop       {w['workflow'] / w['loop']:9.2f}   (goal <= 1.3)")
        mb = peak_memory(root, a.long_frames)
        print(f"\n## peak memory, one cache process, {a.long_frames}-frame video: {mb:.0f} MB   (goal < 1024)")


if __name__ == "__main__":
    main()
