"""Zero-shot classification: prompt embeddings (ours and the authors' pooling), scores
against pooled frame embeddings, and the split's evaluation with failed videos as misses."""

from __future__ import annotations

import h5py
import numpy as np
import open_clip
import torch

from moclip.clip.prompts import class_prompt_name
from moclip.clip.stream import load_clip
from moclip.clip.zeroshot import evaluate_zeroshot, logit_scale, text_classifier, zeroshot_scores
from moclip.dataset.videos import Video
from moclip.shards import pool_frames

TINY = "moclip-tiny"


def test_pool_and_zeroshot_known_answer():
    rng = np.random.default_rng(0)
    classifier = np.linalg.qr(rng.normal(size=(16, 5)))[0].T  # 5 orthonormal class embeddings, D=16
    labels = np.array([0, 1, 2, 3, 4, 2])
    # Frames: the class direction at various scales plus small noise; norms must not matter.
    feats = classifier[labels][:, None, :] * rng.uniform(0.5, 20, (6, 3, 1)) + rng.normal(0, 0.01, (6, 3, 16))
    pooled = pool_frames(feats)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1, atol=1e-3)
    scores = zeroshot_scores(feats, classifier, 100.0)
    assert (scores.argmax(1) == labels).all()
    np.testing.assert_allclose(scores[np.arange(6), labels], 100, atol=0.5)
    np.testing.assert_allclose(np.delete(scores[0], 0), 0, atol=0.5)


def test_evaluate_zeroshot_end_to_end(tmp_path):
    clip = load_clip(TINY, "none")
    names = ["BallFall", "BallRise", "BoxFall"]
    classifier = text_classifier(clip, names)
    rows, feats, valid = [], [], []
    for i, (lab, split) in enumerate([(0, "test"), (1, "test"), (2, "test"), (1, "train"), (2, "test")]):
        rows.append(Video(f"v{i}", f"{names[lab]}/v{i}.avi", names[lab], lab, 1, i, 0, split1=split))
        feats.append(np.repeat(classifier[lab][None] * 3, 2, 0))
        valid.append(i != 4)
    path = tmp_path / "shard.h5"
    with h5py.File(path, "w") as h:
        h["video_id"] = np.array([r.video_id for r in rows], dtype=object).astype("S")
        f = np.array(feats, np.float32)
        f[4] = np.nan
        h["features"], h["valid"] = f, np.array(valid)
    ids, labels, scores, got_names, m = evaluate_zeroshot(clip, rows, [path], split=1)
    assert ids == ["v0", "v1", "v2", "v4"] and got_names == names
    assert scores[:3].argmax(1).tolist() == [0, 1, 2] and np.isnan(scores[3]).all()
    assert m["top1"] == 0.75 and m["failed_videos"] == ["v4"]
    assert np.isclose(scores[0, 0], logit_scale(clip), rtol=1e-4)


def test_prompt_norm_false_averages_the_raw_prompt_embeddings_as_the_authors_do(tmp_path):
    """clip.prompt_norm: true (ours) averages each prompt's unit embedding; false (the
    authors' generate_text_features.py) averages the raw embeddings, then normalises."""
    clip = load_clip(TINY, "none")
    templates = ["a photo of {}", "a video of {} in a very long and quite different sentence", "{}"]
    names = ["BallFall", "BoxRise"]
    ours = text_classifier(clip, names, templates=templates)
    theirs = text_classifier(clip, names, templates=templates, prompt_norm=False)
    tokenizer = open_clip.get_tokenizer(TINY)
    for k, name in enumerate(names):
        with torch.no_grad():
            raw = clip.model.encode_text(tokenizer([t.format(class_prompt_name(name)) for t in templates]))
        raw = raw.float().numpy()
        assert np.linalg.norm(raw, axis=1).std() > 0  # the prompts' norms differ: the two pools do too
        unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
        np.testing.assert_allclose(theirs[k], unit(raw.mean(0)), atol=1e-5)
        np.testing.assert_allclose(ours[k], unit((raw / np.linalg.norm(raw, axis=1, keepdims=True)).mean(0)), atol=1e-5)
    assert np.abs(ours - theirs).max() > 1e-4
