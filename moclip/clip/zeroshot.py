"""Zero-shot classification: each class's prompts embedded by CLIP's text encoder, and
the test videos' pooled frame embeddings scored against them (rule ``zeroshot``).

Apart from the image-embedding stage (:mod:`moclip.clip.stream`), so that an edit to the
prompts or their scoring reruns the zero-shot jobs and never the embeddings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from moclip.clip.prompts import PromptSet, missing_phrases, prompt_set
from moclip.clip.stream import Clip, load_clip
from moclip.dataset.videos import Video, class_names, read_manifest
from moclip.io import write_json
from moclip.metrics import summarize, write_predictions
from moclip.runtime import resolve_device, use_threads
from moclip.settings import default
from moclip.shards import pool_frames, read_shards

log = logging.getLogger(__name__)


@torch.no_grad()
def text_classifier(
    clip: Clip,
    class_names: list[str],
    prompts: str | PromptSet = "clip-ucf101",
    templates=None,
    device: str = "cpu",
    prompt_norm: bool = True,
) -> np.ndarray:
    """[C, D]: each class's prompts (a set's name, a prompt file, or a
    :class:`~moclip.clip.prompts.PromptSet`) embedded in float32 and averaged, then normalised;
    ``prompt_norm`` normalises each prompt's embedding before the mean (ours; the authors
    average the raw embeddings)."""
    ps = prompts if isinstance(prompts, PromptSet) else prompt_set(prompts, templates)
    dev = resolve_device(device)
    model = clip.model.to(dev)
    tokenizer = open_clip.get_tokenizer(clip.name)
    if ps.phrases and (missing := missing_phrases(class_names, ps)):
        log.info("%d classes have no phrase; their class words are used: %s", len(missing), missing[:5])
    out = []
    for name in class_names:
        z = model.encode_text(tokenizer(ps.prompts(name)).to(dev)).float()
        z = (F.normalize(z, dim=-1) if prompt_norm else z).mean(0)
        out.append(F.normalize(z, dim=0).cpu().numpy())
    return np.stack(out)


def zeroshot_scores(features: np.ndarray, classifier: np.ndarray, logit_scale: float) -> np.ndarray:
    """[N, C]: logit scale x cosine between each video's pooled frame embedding and each class."""
    v = pool_frames(features)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return logit_scale * v @ classifier.T


def logit_scale(clip: Clip) -> float:
    return float(clip.model.logit_scale.exp())


def evaluate_zeroshot(
    clip: Clip,
    manifest: list[Video],
    shard_files: list[Path | str],
    split: int,
    prompts: str | PromptSet = "clip-ucf101",
    templates=None,
    device: str = "cpu",
    prompt_norm: bool = True,
) -> tuple[list[str], np.ndarray, np.ndarray, list[str], dict]:
    """Zero-shot on the test videos of ``split``: (ids, labels, scores [N, C], class names, metrics).

    Failed videos keep NaN scores and count as misses.
    """
    names = class_names(manifest)
    test = [r for r in manifest if r.split(split) == "test"]
    feats = read_shards(shard_files)
    missing = [r.video_id for r in test if r.video_id not in feats]
    if missing:
        raise ValueError(f"{len(missing)} test videos have no embedding row, e.g. {missing[:3]}")
    classifier = text_classifier(clip, names, prompts, templates, device, prompt_norm)
    scores = np.full((len(test), len(names)), np.nan, np.float32)
    ok = [j for j, r in enumerate(test) if feats[r.video_id] is not None]
    if ok:
        scores[ok] = zeroshot_scores(np.stack([feats[test[j].video_id] for j in ok]), classifier, logit_scale(clip))
    labels = np.array([r.label for r in test], np.int64)
    metrics = summarize(scores, labels, len(names))
    metrics["failed_videos"] = [r.video_id for r in test if feats[r.video_id] is None]
    return [r.video_id for r in test], labels, scores, names, metrics


def zeroshot(
    *,
    manifest: Path | str,
    shards: list[Path | str],
    split: int,
    model: str,
    pretrained: str,
    device: str,
    prompts: str,
    templates: list[str] | None,
    seed: int,
    predictions: Path | str,
    metrics: Path | str,
    prompt_norm: bool = True,
    quick_gelu: bool | None = None,
    cpu_threads: int = default("clip", "cpu_threads"),
) -> dict:
    """Rule ``zeroshot``: one split's test videos classified from the CLIP shards by the
    ``prompts`` set (``clip-ucf101``, ``phrases`` or a prompt file; ``templates`` replace
    its templates; ``prompt_norm``: see :func:`text_classifier`)."""
    use_threads(cpu_threads, "clip.cpu_threads")
    clip = load_clip(model, pretrained, seed=seed, quick_gelu=quick_gelu)
    ids, labels, scores, names, m = evaluate_zeroshot(
        clip, read_manifest(manifest), shards, split, prompt_set(prompts, templates), None, device, prompt_norm
    )
    write_predictions(predictions, ids, labels, scores, names)
    m = {
        "method": "zeroshot",
        "split": split,
        "model": model,
        "pretrained": pretrained,
        "architecture": clip.architecture,
        "weights_digest": clip.weights_digest,
        "prompts": prompts,
        "prompt_norm": prompt_norm,
        **m,
    }
    write_json(metrics, m)
    return m
