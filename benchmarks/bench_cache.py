"""Cache-stage benchmark: everything measured side by side in one run, printed as ratios.

1. One process, the same UCF101-like videos (320x240, 25 fps, MPEG-4 Part 2 in AVI):
   bare PyAV decode, bare decode + motion-vector export (``to_ndarray()``: the least work
   any MV cache must do), and our ``cache_video`` (MVs + frames + HDF5), with the default
   LZ4 maps and JPEG frames, with raw frames, with raw maps, and without the arrays'
   Fletcher-32 checksums (what they cost). Paired rounds (see ``paired_rounds``). Goal: >= 0.7.
   Then the time to read one video's MV cache, and its size, for each compression; and a
   video's frame cache, JPEG against raw: its bytes, and what the CLIP stage's loader does
   with it (read, and decode JPEG on the CPU), a video.
2. ``snakemake --cores 2 caches`` wall time against the in-process loop over the same
   videos with 2 processes. Goal: <= 1.3.
3. Peak memory of one cache job on a long video. Goal: < 1 GB.

Usage: python benchmarks/bench_cache.py [--videos 768] [--distinct 27] [--frames 180] [--shard-size 256]
                                        [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import av

import moclip.video.cache
from moclip.dataset.demo import DemoSpec, make_demo_dataset, render_clip
from moclip.video.cache import FrameStorage, cache_shard, cache_video, read_mv
from moclip.video.codec import DecodeSettings
from moclip.video.encode import encode_video
from moclip.workflow import runner

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


def paired_rounds(variants: dict, paths: list[Path], rounds: int, cleanup) -> dict[str, list[float]]:
    """Seconds of each variant in each round. Within a round every video is run by every
    variant, in an order that rotates from video to video, so a change in the machine's
    speed (on this shared VM it swings by 2x within minutes) hits every variant alike."""
    names = list(variants)
    totals: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for i, p in enumerate(paths):
            k = (i + r) % len(names)
            for name in names[k:] + names[:k]:
                t = time.perf_counter()
                variants[name](i, p)
                spent[name] += time.perf_counter() - t
        cleanup()
        for n in names:
            totals[n].append(spent[n])
    return totals


@contextmanager
def unchecked():
    """Caches written without their Fletcher-32 checksums (as before they had them)."""
    saved, moclip.video.cache.CHECKED = moclip.video.cache.CHECKED, {}
    try:
        yield
    finally:
        moclip.video.cache.CHECKED = saved


def _unchecked_cache_video(*args, **kwargs):
    with unchecked():
        return cache_video(*args, **kwargs)


def per_process(paths: list[Path], out: Path, rounds: int) -> tuple[int, dict[str, list[float]]]:
    frames = bare_decode(paths, False)
    settings = DecodeSettings()
    # New files in every round, as in the workflow: replacing existing files would add the
    # kernel's cost of freeing the old ones to the timing.
    variants = {
        "bare PyAV decode": lambda i, p: bare_decode([p], False),
        "bare decode + MV export": lambda i, p: bare_decode([p], True),
        "moclip cache_video": lambda i, p: cache_video(
            p, p.stem, out / "a" / f"{i}.h5", out / "b" / f"{i}.h5", settings
        ),
        "moclip cache_video, raw frames": lambda i, p: cache_video(
            p, p.stem, out / "e" / f"{i}.h5", out / "f" / f"{i}.h5", settings, storage=FrameStorage("raw")
        ),
        "moclip cache_video, raw maps": lambda i, p: cache_video(
            p, p.stem, out / "c" / f"{i}.h5", out / "d" / f"{i}.h5", settings, "none"
        ),
        "moclip cache_video, unchecked": lambda i, p: _unchecked_cache_video(
            p, p.stem, out / "g" / f"{i}.h5", out / "h" / f"{i}.h5", settings
        ),
    }
    return frames, paired_rounds(variants, paths, rounds, lambda: shutil.rmtree(out, ignore_errors=True))


def read_costs(paths: list[Path], out: Path) -> dict[str, tuple[float, float]]:
    """(ms to read one video's MV cache, KB on disk) for each compression of the maps."""
    settings, costs = DecodeSettings(), {}
    for comp in ("lz4", "lz4 unchecked", "zstd", "lzf", "none"):
        files = [out / comp / f"{i}.h5" for i in range(len(paths))]
        write = _unchecked_cache_video if comp.endswith("unchecked") else cache_video
        for p, f in zip(paths, files):
            write(p, p.stem, f, out / "frames" / f"{comp}{f.name}", settings, comp.split()[0])
        best = min(_timed(lambda files=files: [read_mv(f) for f in files]) for _ in range(3))
        costs[comp] = (1e3 * best / len(files), sum(f.stat().st_size for f in files) / len(files) / 1e3)
    return costs


def frame_costs(paths: list[Path], out: Path) -> dict[str, tuple[float, float]]:
    """(KB of one video's frame cache, ms for the CLIP stage's loader to read it and decode
    its frames on the CPU: best of 3) for JPEG and raw frames."""
    from moclip.video.frames import read_frames  # torch: imported only here

    costs = {}
    for enc in ("jpeg", "jpeg unchecked", "raw"):
        files = [out / enc / f"{i}.h5" for i in range(len(paths))]
        write = _unchecked_cache_video if enc.endswith("unchecked") else cache_video
        for p, f in zip(paths, files):
            write(p, p.stem, out / "mv.h5", f, DecodeSettings(), storage=FrameStorage(enc.split()[0]))
        best = min(_timed(lambda files=files: [read_frames(f) for f in files]) for _ in range(3))
        costs[enc] = (sum(f.stat().st_size for f in files) / len(files) / 1e3, 1e3 * best / len(files))
    return costs


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


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


def workflow_vs_loop(root: Path, videos: Path, lists: Path, shards: int, pairs: int) -> dict:
    """Wall seconds of ``snakemake --cores 2 caches`` and of the in-process loop over the same
    videos, alternated ``pairs`` times (fresh outputs each time) so that both see the same
    machine: each pair gives a ratio."""
    import yaml

    from moclip.dataset.manifest import build_manifest

    cfg = root / "bench.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"dataset": {"videos": str(videos), "lists": str(lists), "splits": [1], "shards": shards, "val_groups": 1}}
        )
    )

    def workflow(wd: Path) -> None:
        runner.run(wd, cfg, "caches", "--quiet", "all", cores=2)

    def loop(out: Path) -> int:
        rows = build_manifest(videos, lists, [1], 1, shards, 0)
        cache_shard(
            videos=[videos / r.path for r in rows],
            videos_root=videos,
            settings=DecodeSettings(),
            compression="lz4",
            mv=out / "mv",
            frames=out / "fr",
            index=out / "index.tsv",
            threads=2,
        )
        return len(rows)

    result: dict = {"workflow": [], "loop": []}
    for k in range(pairs):
        result["workflow"].append(_timed(lambda k=k: workflow(root / f"wf{k}")))
        n = []
        result["loop"].append(_timed(lambda k=k, n=n: n.append(loop(root / f"loop{k}"))))
        result["videos"] = n[0]
        shutil.rmtree(root / f"wf{k}")
        shutil.rmtree(root / f"loop{k}")
    return result


def peak_memory(root: Path, frames: int) -> float:
    """Peak RSS (MB) of a fresh process caching one long video.

    Read from the child's own VmHWM: its ``ru_maxrss`` would include this (large) parent's,
    which Linux carries across fork and exec."""
    path = root / "long.avi"
    clip = render_clip(DemoSpec(frames=50), "Ball", "Shake", 1, 1)
    encode_video(path, (clip[i % 50] for i in range(frames)))
    code = (
        "from moclip.video.cache import cache_video; from moclip.video.codec import DecodeSettings;"
        f"r = cache_video({str(path)!r}, 'long', {str(root / 'l_mv.h5')!r}, {str(root / 'l_fr.h5')!r},"
        " DecodeSettings());"
        "assert r.status == 'ok', r;"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"
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
    ap.add_argument("--rounds", type=int, default=5, help="paired rounds of the one-process comparison")
    ap.add_argument("--pairs", type=int, default=2, help="alternated workflow/loop runs (0: skip)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        videos, lists = make_dataset(root / "data", a.videos, a.distinct, a.frames)
        distinct = sorted(videos.rglob("*_c01.avi"))
        print(
            f"# dataset: {a.videos} videos ({len(distinct)} distinct), {a.frames} frames, 320x240 MPEG-4 Part 2 "
            f"in AVI ({time.perf_counter() - t:.0f} s to make)"
        )
        frames, totals = per_process(distinct, root / "pp", a.rounds)
        bare = totals["bare decode + MV export"]
        print(f"\n## one process, {len(distinct)} videos, {frames} frames; {a.rounds} paired rounds, median round")
        for name, seconds in totals.items():
            print(f"{name:30s} {frames / statistics.median(seconds):9.0f} frames/s")
        for name in [n for n in totals if n.startswith("moclip")]:
            r = [b / o for b, o in zip(bare, totals[name])]
            print(
                f"ratio {name[7:]:26s} / bare MV export {statistics.median(r):5.2f}  "
                f"(rounds {min(r):.2f}-{max(r):.2f}; goal >= 0.7)"
            )
        jpeg, raw = (statistics.median(totals[n]) for n in ("moclip cache_video", "moclip cache_video, raw frames"))
        print(f"JPEG frames cost {1e3 * (jpeg - raw) / len(distinct):+.1f} ms a video against raw ones")
        plain = statistics.median(totals["moclip cache_video, unchecked"])
        print(f"checksums cost {1e3 * (jpeg - plain) / len(distinct):+.2f} ms a video ({jpeg / plain - 1:+.1%})")
        print(f"\n## one video's frame cache ({len(distinct)} videos): bytes, CLIP loader's read + decode (best of 3)")
        for enc, (kb, ms) in frame_costs(distinct, root / "fc").items():
            print(f"{enc:14s} {kb:7.1f} KB  {ms:6.2f} ms")
        print(f"\n## reading one video's MV cache ({len(distinct)} videos, best of 3)")
        for comp, (ms, kb) in read_costs(distinct, root / "rd").items():
            print(f"{comp:13s} {ms:6.2f} ms  {kb:7.1f} KB")
        if not a.pairs:
            return
        shards = max(1, a.videos // a.shard_size)
        w = workflow_vs_loop(root, videos, lists, shards, a.pairs)
        print(f"\n## {w['videos']} videos in {shards} shards, 2 cores, {a.pairs} alternated pairs")
        print("snakemake --cores 2 caches  " + " ".join(f"{t:6.1f}" for t in w["workflow"]) + " s")
        print("in-process loop, 2 procs    " + " ".join(f"{t:6.1f}" for t in w["loop"]) + " s")
        print(
            "ratio workflow / loop       "
            + " ".join(f"{x / y:6.2f}" for x, y in zip(w["workflow"], w["loop"]))
            + "   (goal <= 1.3)"
        )
        mb = peak_memory(root, a.long_frames)
        print(f"\n## peak memory, one cache process, {a.long_frames}-frame video: {mb:.0f} MB   (goal < 1024)")


if __name__ == "__main__":
    main()
