"""Classify new videos with a finished run: the same decoding, sampling and models as the workflow."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from moclip.clip.stream import ClipSettings, encode_videos
from moclip.heads import load_head
from moclip.io import read_json
from moclip.methods import HEADS, PRODUCT, PRODUCT_MODEL
from moclip.mv.data import read_segments
from moclip.mv.train import load_checkpoint, view_features
from moclip.runtime import autocast_dtype, resolve_device
from moclip.shards import pool_frames, pool_segments
from moclip.video.cache import FrameStorage, cache_video
from moclip.video.codec import DecodeSettings
from moclip.video.encode import EncodeSettings
from moclip.video.frames import read_frames
from moclip.video.reencode import FAILED, REENCODED, reencode_plan, reencode_video


@dataclass
class Prediction:
    video: str
    classes: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    error: str = ""


def run_reencode_plan(settings: dict) -> tuple[EncodeSettings, int] | None:
    """The re-encode a run's ``settings`` (its report's) made before caching (rule
    reencode_shard): every video by dataset.reencode's recipe, or with
    decode.reencode_unsupported only those without motion vectors; None when it made none."""
    recipe = settings["dataset"].get("reencode", "none")
    if recipe == "none" and not settings["decode"].get("reencode_unsupported", False):
        return None
    return reencode_plan(None if recipe == "none" else recipe, settings["decode"]["max_frames"])


def _storage_keys(frames: dict) -> dict:
    """The keys of a run's ``frames`` settings that say how its caches stored them."""
    return {k: v for k, v in frames.items() if k in ("encoding", "jpeg_quality")}


class Predictor:
    """The models of one split of a finished run, loaded once on ``device``. Each network
    computes in the run's precision setting (``precision`` overrides both): on a GPU with
    ``auto`` that is the workflow's mixed precision, on the CPU float32."""

    def __init__(self, run: Path | str = "results", split: int = 1, device: str = "cpu", precision: str | None = None):
        report = Path(run) / "reports" / f"split{split}" / "metrics.json"
        if not report.is_file():
            raise FileNotFoundError(f"{report}: no finished run for split {split} (run the workflow first)")
        rep = read_json(report)
        s, art = rep["settings"], rep["artefacts"]
        self.decode = DecodeSettings(
            mv_cell=s["decode"]["mv_cell"],
            max_frames=s["decode"]["max_frames"],
            frame_count=s["frames"]["count"],
            short_side=s["frames"]["short_side"],
        )
        # A run from before frames.encoding stored its frames raw.
        self.storage = FrameStorage.from_config({"encoding": "raw", **_storage_keys(s["frames"])})
        self.device = resolve_device(device)
        # The CLIP settings as the run's embeddings record them (a report from before they
        # did: as the report's settings echo the config).
        if "clip_embeddings" in art:
            cs = ClipSettings.of_shard(report.parent / art["clip_embeddings"])
        else:
            keys = set(ClipSettings.__dataclass_fields__) - {"seed"}
            cs = ClipSettings.from_config({**{k: v for k, v in s["clip"].items() if k in keys}, "seed": s["seed"]})
        self.clip = cs.load()
        self.clip.model.to(self.device)
        self.clip_amp = autocast_dtype(self.device, precision or cs.precision)
        # Artefacts are named relative to the report's directory, so a moved run still loads.
        mvnet, ms, _ = load_checkpoint(report.parent / art["mv_model"])
        self.mvnet, self.mv_settings = mvnet.to(self.device), replace(ms, precision=precision or ms.precision)
        self.head, meta = load_head(report.parent / art[PRODUCT_MODEL])
        self.classes, self.head_settings = meta["classes"], meta["settings"]
        self.clip_dtype = cs.dtype  # the workflow stores embeddings in this precision
        self.reencode = run_reencode_plan(s)

    @torch.no_grad()
    def __call__(self, video: Path | str, top: int = 5) -> Prediction:
        with tempfile.TemporaryDirectory() as tmp:
            source = video
            if self.reencode is not None:
                rec = reencode_video(video, Path(video).stem, Path(tmp) / "reencoded.avi", *self.reencode)
                if rec.status == FAILED:
                    return Prediction(str(video), error=f"re-encode failed: {rec.error}")
                if rec.status == REENCODED:
                    source = Path(tmp) / "reencoded.avi"
            rec = cache_video(
                source, Path(video).stem, Path(tmp) / "mv.h5", Path(tmp) / "fr.h5", self.decode, storage=self.storage
            )
            if rec.status != "ok":
                return Prediction(str(video), error=rec.error)
            frames, _, _ = read_frames(Path(tmp) / "fr.h5", self.device)  # the workflow's frames, decoded on the device
            ms = self.mv_settings
            maps = torch.from_numpy(read_segments(Path(tmp) / "mv.h5", ms.eval_segments, ms, None))[None]
        z = encode_videos(self.clip, frames[None], self.device, self.clip_amp)[0].cpu().numpy()
        z = z.astype(self.clip_dtype).astype(np.float32)
        maps = maps.to(self.device)
        m = view_features(self.mvnet, maps, ms, ms.eval_crops).mean(2)[0].cpu().numpy()  # as the workflow's features
        clip_feature = pool_frames(z, normalize=self.head_settings.frame_norm)
        streams = {"clip": clip_feature, "mv": pool_segments(m)}  # the product head's, in its order
        feat = np.concatenate([streams[s] for s in HEADS[PRODUCT].streams])[None].astype(np.float32)
        p = torch.softmax(self.head(torch.from_numpy(feat)), -1)[0].numpy()
        order = np.argsort(-p, kind="stable")[: min(top, len(p))]
        return Prediction(str(video), [(self.classes[i], float(p[i])) for i in order])
