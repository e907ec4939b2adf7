"""CLIP stream: loading from a tag, a checkpoint file and none; embedding shards; zero-shot maths."""

from __future__ import annotations

import contextlib

import h5py
import numpy as np
import open_clip
import pytest
import torch
from conftest import DEFAULTS, merged
from PIL import Image

from moclip.clip.stream import (
    ClipLoadError,
    FrameShard,
    built_name,
    collate_frames,
    embed_frame_caches,
    embed_shards,
    encode_videos,
    load_clip,
    preprocess,
    preprocess_batch,
    tag_quick_gelu,
    videos_tensor,
)
from moclip.io import BrokenFileError
from moclip.metrics import per_class_top1, summarize, topk_hits
from moclip.shards import pool_frames, read_shard
from moclip.video.cache import ENCODINGS, FrameStorage, cache_shard
from moclip.video.codec import DecodeSettings
from moclip.video.frames import decode_frames, read_frames
from moclip.workflow.checks import check_models
from moclip.workflow.config import ConfigError

TINY = "moclip-tiny"


def test_none_is_seeded_random():
    a, b = load_clip(TINY, "none", seed=0), load_clip(TINY, None, seed=0)
    assert a.random_weights and a.weights_digest == b.weights_digest
    assert load_clip(TINY, "none", seed=1).weights_digest != a.weights_digest


def test_checkpoint_file_round_trip_is_bitwise(tmp_path):
    src = load_clip(TINY, "none", seed=3)
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": src.model.state_dict()}, path)
    got = load_clip(TINY, str(path), seed=0)
    assert got.pretrained == str(path) and not got.random_weights
    assert got.weights_digest == src.weights_digest
    for (k, v), (k2, v2) in zip(src.model.state_dict().items(), got.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """A Hugging Face cache holding one tag of the tiny model, with the hub offline."""
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.setitem(
        open_clip.pretrained._PRETRAINED,
        TINY,
        {
            "cachedtag": open_clip.pretrained._pcfg(hf_hub="moclip/tiny-test/"),
            "missingtag": open_clip.pretrained._pcfg(hf_hub="moclip/not-here/"),
        },
    )
    repo = tmp_path / "models--moclip--tiny-test"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    src = load_clip(TINY, "none", seed=5)
    torch.save(src.model.state_dict(), snap / "open_clip_pytorch_model.bin")
    return tmp_path, src


def test_pretrained_tag_loads_from_the_cache(offline_hub):
    cache, src = offline_hub
    got = load_clip(TINY, "cachedtag", cache_dir=str(cache))
    assert got.pretrained == "cachedtag" and got.weights_digest == src.weights_digest


def test_offline_tag_error_says_what_to_set(offline_hub):
    cache, _ = offline_hub
    with pytest.raises(ClipLoadError, match="set clip.pretrained to") as e:
        load_clip(TINY, "missingtag", cache_dir=str(cache))
    assert "clip.pretrained: none" in str(e.value)


def test_unknown_tag_and_model():
    with pytest.raises(ClipLoadError, match="neither a file nor a pretrained tag"):
        load_clip(TINY, "no-such-tag")
    with pytest.raises(ClipLoadError, match="unknown open_clip architecture"):
        load_clip("NoSuchNet", "none")


@pytest.fixture(scope="module")
def frame_caches(tiny_demo, tmp_path_factory):
    videos, _ = tiny_demo
    root = tmp_path_factory.mktemp("clipcache")
    items = sorted(videos.rglob("*.avi"))[:5]
    bad = root / "v_Bad_g01_c01.avi"
    bad.write_bytes(b"\x00" * 100)
    items.insert(2, bad)
    cache_shard(
        videos=items,
        videos_root=videos,
        settings=DecodeSettings(frame_count=4),
        compression="lz4",
        mv=root / "mv",
        frames=root / "frames",
        index=root / "index.tsv",
    )
    return root, [p.stem for p in items]


def test_shard_features_match_the_encoder_on_the_same_frames(frame_caches, tmp_path):
    root, ids = frame_caches
    clip = load_clip(TINY, "none")
    out = tmp_path / "shard.h5"
    valid = embed_frame_caches(
        clip, [root / "frames" / f"{v}.h5" for v in ids], ids, out, batch_videos=2, workers=1, dtype="float32"
    )
    got_ids, feats, mask, attrs = read_shard(out)
    assert got_ids == ids and mask.tolist() == valid.tolist() == [True, True, False, True, True, True]
    assert feats.shape == (6, 4, 64) and np.isnan(feats[2]).all() and not np.isnan(feats[mask]).any()
    assert attrs["model"] == TINY and attrs["weights_digest"] == clip.weights_digest and attrs["random_weights"]
    # Reference: open_clip's own (PIL) preprocessing and encode_image, frame by frame.
    _, _, pil_preprocess = open_clip.create_model_and_transforms(TINY, pretrained=None)
    frames = read_frames(root / "frames" / f"{ids[0]}.h5")[0].numpy()
    x = torch.stack([pil_preprocess(Image.fromarray(im)) for im in frames])
    with torch.no_grad():
        ref = clip.model.encode_image(x).numpy()
    cos = (ref * feats[0]).sum(-1) / np.linalg.norm(ref, axis=-1) / np.linalg.norm(feats[0], axis=-1)
    assert cos.min() > 0.995, cos
    with torch.no_grad():  # exactly the encoder on our own preprocessing
        exact = clip.model.encode_image(preprocess(torch.from_numpy(frames), 64, clip.mean, clip.std)).numpy()
    np.testing.assert_allclose(feats[0], exact, rtol=1e-4, atol=1e-5)


def test_several_shards_in_one_job_equal_one_job_a_shard(frame_caches, tmp_path):
    """A GPU job embeds every shard with one loader (one start-up): each shard's file must
    hold exactly what a job of its own writes, the failed video's row included."""
    root, ids = frame_caches
    clip = load_clip(TINY, "none")
    files = [root / "frames" / f"{v}.h5" for v in ids]
    parts = [slice(0, 2), slice(2, 3), slice(3, 3), slice(3, 6)]  # an empty shard too
    shards = [FrameShard(ids[p], files[p], tmp_path / f"all{k}.h5") for k, p in enumerate(parts)]
    masks = embed_shards(clip, shards, batch_videos=4, workers=1, dtype="float32")
    for k, p in enumerate(parts):
        alone = tmp_path / f"one{k}.h5"
        mask = embed_frame_caches(clip, files[p], ids[p], alone, 4, 0, dtype="float32")
        a, b = read_shard(tmp_path / f"all{k}.h5"), read_shard(alone)
        assert a[0] == b[0] == ids[p] and (a[2] == b[2]).all() and (masks[k] == mask).all()
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)
    assert masks[1].tolist() == [False]  # the bad video, alone in its shard


def test_batched_preprocessing_keeps_video_order_across_frame_sizes():
    """Videos of different frame sizes (aspect ratios) are preprocessed one call a size on
    the device; the result is each video's own preprocessing, in the videos' order."""
    clip = load_clip(TINY, "none")
    g = torch.Generator().manual_seed(0)
    sizes = [(48, 64), (64, 48), (48, 64), (40, 40)]
    videos = [torch.randint(0, 256, (3, h, w, 3), generator=g, dtype=torch.uint8) for h, w in sizes]
    got = preprocess_batch(videos, clip, torch.device("cpu"))
    want = torch.cat([preprocess(v, clip.image_size, clip.mean, clip.std) for v in videos])
    assert got.shape == (12, 3, clip.image_size, clip.image_size)
    torch.testing.assert_close(got, want)


def test_metrics_count_failed_as_miss():
    scores = np.array([[3, 2, 1], [1, 3, 2], [np.nan] * 3, [1, 2, 3]], float)
    labels = np.array([0, 2, 1, 2])
    assert topk_hits(scores, labels, 1).tolist() == [True, False, False, True]
    assert topk_hits(scores, labels, 2).tolist() == [True, True, False, True]
    assert per_class_top1(scores, labels, 4) == [1.0, 0.0, 0.5, None]
    m = summarize(scores, labels, 3)
    assert m["top1"] == 0.5 and m["n_test"] == 4 and m["n_failed"] == 1


def test_random_weights_do_not_warn_but_the_root_logger_still_works(caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        load_clip(TINY, "none")
        logging.getLogger().warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]


# --------------------------------------------------------------------------- a second device
# The meta device stands in for a GPU: an op that mixes a CPU tensor into a meta op fails
# as a CPU/CUDA mix does (0-dim CPU scalars pass, as on CUDA); values cannot come back.

META = torch.device("meta")


def test_preprocessing_and_encoding_run_on_the_frames_device():
    clip = load_clip(TINY, "none")
    clip.model.to(META)
    frames = torch.randint(0, 256, (2, 3, 48, 64, 3), dtype=torch.uint8)
    x = preprocess(frames[0].to(META), clip.image_size, clip.mean, clip.std)
    assert x.device == META and x.shape == (3, 3, clip.image_size, clip.image_size)
    z = encode_videos(clip, frames, META)
    assert z.device == META and z.shape == (2, 3, clip.model.visual.output_dim) and z.dtype == torch.float32
    with pytest.raises(RuntimeError, match="meta"):  # the guard works: a CPU tensor mixed in fails
        preprocess(frames[0].to(META), clip.image_size, clip.mean, clip.std) - torch.ones(3, 1, 1)


def test_the_embedding_stage_runs_on_its_device_up_to_reading_back(frame_caches, tmp_path):
    """embed_frame_caches on the stand-in device: loader, batching by frame size,
    preprocessing and the encoder all run there; it stops only where the embeddings must
    come back to the host."""
    root, ids = frame_caches
    clip = load_clip(TINY, "none")
    with pytest.raises(NotImplementedError, match="meta"):
        embed_frame_caches(clip, [root / "frames" / f"{v}.h5" for v in ids], ids, tmp_path / "s.h5", 2, 0, "meta")
    assert next(clip.model.parameters()).device == META and not (tmp_path / "s.h5").exists()


def test_a_loader_batch_stacks_each_frame_size_before_pinning():
    """The workers stack a batch's videos one tensor a frame size, so that the loader pins
    exactly the tensors that are copied to the device (no copy into pageable memory after
    pinning); failed videos are listed apart."""
    a, b = torch.zeros(2, 4, 6, 3, dtype=torch.uint8), torch.ones(2, 6, 4, 3, dtype=torch.uint8)
    batch = collate_frames([(0, a), (1, None), (2, b), (3, a + 2)])
    assert batch.failed == [1] and [i for i, _ in batch.groups] == [[0, 3], [2]]
    assert torch.equal(batch.groups[0][1], torch.stack([a, a + 2])) and batch.groups[1][1].shape == (1, 2, 6, 4, 3)


# --------------------------------------------------------------------------- the activation OpenAI's weights need


@pytest.fixture(scope="module")
def vit_b32_file(tmp_path_factory):
    """ViT-B-32's real architecture with random weights, saved as a local checkpoint file
    that stands in for a download."""
    path = tmp_path_factory.mktemp("vitb32") / "ViT-B-32-random.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), path)
    return path


def _activations(model: torch.nn.Module) -> set[str]:
    return {type(m).__name__ for m in model.modules() if type(m).__name__ in ("GELU", "QuickGELU")}


def test_openai_weights_are_built_with_quickgelu_through_the_real_download_path(vit_b32_file, monkeypatch):
    """(ViT-B-32, openai) goes through open_clip's own download step, pointed at a local
    file (no network): the network built contains QuickGELU and no GELU, as OpenAI trained
    it (open_clip 3 builds GELU for this pair and only warns)."""
    asked = []

    def download(cfg, *args, **kwargs):
        asked.append(cfg)
        return str(vit_b32_file)

    monkeypatch.setattr(open_clip.factory, "download_pretrained", download)
    clip = load_clip("ViT-B-32", "openai")
    assert asked and asked[0].get("quick_gelu") is True  # the tag's own metadata was read
    assert _activations(clip.model) == {"QuickGELU"} and clip.quick_gelu
    assert clip.architecture == "ViT-B-32-quickgelu" and clip.name == "ViT-B-32"
    # A tag trained with GELU keeps it; a local file keeps the architecture as named.
    assert not tag_quick_gelu("ViT-B-32", "laion2b_s34b_b79k")
    as_file = load_clip("ViT-B-32", str(vit_b32_file), quick_gelu=False)
    assert _activations(as_file.model) == {"GELU"} and as_file.weights_digest == clip.weights_digest
    assert _activations(load_clip("ViT-B-32-quickgelu", str(vit_b32_file)).model) == {"QuickGELU"}


def test_every_quickgelu_tag_of_open_clip_is_recognised():
    """Not only (ViT-B-32, openai): every tag open_clip marks as trained with QuickGELU."""
    marked = [
        (m, t)
        for m, t in open_clip.list_pretrained()
        if open_clip.pretrained.get_pretrained_cfg(m, t).get("quick_gelu") and not m.endswith("-quickgelu")
    ]
    assert len(marked) > 10 and all(tag_quick_gelu(m, t) for m, t in marked)
    assert built_name("ViT-L-14", True) == "ViT-L-14-quickgelu"
    assert built_name("RN50-quickgelu", True) == "RN50-quickgelu"


def test_frame_norm_false_keeps_the_raw_frame_embeddings():
    """heads.frame_norm: the mean of unit frame embeddings (ours) or of the raw ones (the
    authors': one frame as get_image_features gives it)."""
    feats = np.array([[[3.0, 4.0], [0.0, 10.0]]])  # one video, two frames of norms 5 and 10
    np.testing.assert_allclose(pool_frames(feats), [[0.3, 0.9]])
    np.testing.assert_allclose(pool_frames(feats, normalize=False), [[1.5, 7.0]])


# --------------------------------------------------------------------------- JPEG frames


def test_jpeg_frames_are_decoded_on_the_encoders_device_in_one_call_a_batch(frame_caches, tmp_path, monkeypatch):
    """On a GPU the loader's workers only read the JPEG bytes; the stage decodes a batch's
    frames on the card in one ``decode_jpeg`` call (nvJPEG), and the frames stay there up to
    the encoder. A stand-in decoder makes the meta device's images (values cannot come back)."""
    import moclip.video.frames

    root, ids = frame_caches
    calls = []

    def decode_on_device(data, mode, device):
        calls.append((len(data), torch.device(device), {x.device.type for x in data}))
        assert isinstance(data, list) and all(x.dtype == torch.uint8 and x.dim() == 1 for x in data)
        return [torch.empty((3, 240, 320), dtype=torch.uint8, device=device) for _ in data]

    monkeypatch.setattr(moclip.video.frames, "decode_jpeg", decode_on_device)
    clip = load_clip(TINY, "none")
    files = [root / "frames" / f"{v}.h5" for v in ids]
    with pytest.raises(NotImplementedError, match="meta"):  # reading the embeddings back
        embed_frame_caches(clip, files, ids, tmp_path / "s.h5", 2, 0, "meta")
    assert calls == [(8, META, {"cpu"})]  # the first batch: 2 videos x 4 frames, bytes from the host
    clip.model.to(META)
    group = collate_frames([(0, _stored(files[0])), (1, _stored(files[1]))]).groups[0][1]
    z = encode_videos(clip, videos_tensor(group, META), META)
    assert z.device == META and z.shape == (2, 4, 64)


def _stored(path):
    from moclip.video.frames import stored_frames

    with h5py.File(path) as f:
        return stored_frames(f)


def test_a_broken_jpeg_on_the_device_names_its_cache(frame_caches, tmp_path, monkeypatch):
    """nvJPEG fails a whole batch; the stage names the cache whose frame is broken."""
    import moclip.video.frames

    root, ids = frame_caches
    bad = tmp_path / "frames" / "shard-00000" / "bad.h5"
    bad.parent.mkdir(parents=True)
    bad.write_bytes((root / "frames" / f"{ids[1]}.h5").read_bytes())
    with h5py.File(bad, "r+") as f:
        f["frames_jpeg"][:100] = 0
    good, broken = _stored(root / "frames" / f"{ids[0]}.h5"), _stored(bad)

    def decode_on_device(data, mode, device):
        raise RuntimeError("nvjpeg: batched decode failed")

    real = moclip.video.frames.decode_jpeg
    monkeypatch.setattr(
        moclip.video.frames,
        "decode_jpeg",
        lambda d, mode, device: (decode_on_device if device.type != "cpu" else real)(d, mode, device),
    )
    with pytest.raises(BrokenFileError, match=rf"^{bad}: RuntimeError: .*snakemake --forcerun {bad.parent}"):
        decode_frames([good, broken], META)
    with pytest.raises(RuntimeError, match="nvjpeg: batched decode failed"):  # the card's own failure goes on
        decode_frames([good], META)


@pytest.mark.parametrize("model", [TINY, "ViT-B-32"])
def test_clip_embeddings_of_jpeg_frames_agree_with_raw_ones(tiny_demo, tmp_path, model):
    """The demo cached twice, JPEG (default) and raw: the frame caches take at most 0.15 of
    the bytes and every frame's CLIP embedding agrees to a cosine >= 0.99 (random weights:
    the tiny model and ViT-B-32's real architecture)."""
    videos, _ = tiny_demo
    items = sorted(videos.rglob("*.avi"))[:6]
    feats, size = {}, {}
    for enc in ENCODINGS:
        d = tmp_path / enc
        cache_shard(
            videos=items,
            videos_root=videos,
            settings=DecodeSettings(),
            compression="lz4",
            storage=FrameStorage(enc),
            mv=d / "mv",
            frames=d / "fr",
            index=d / "index.tsv",
        )
        files = sorted((d / "fr").glob("*.h5"))
        size[enc] = sum(f.stat().st_size for f in files)
        ids = [f.stem for f in files]
        embed_frame_caches(load_clip(model, "none"), files, ids, d / "clip.h5", batch_videos=3, dtype="float32")
        feats[enc] = read_shard(d / "clip.h5")[1]
    assert size["jpeg"] <= 0.15 * size["raw"], size
    a, b = feats["jpeg"], feats["raw"]
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cos.shape == (6, 8) and cos.min() >= 0.99, cos.min()
    assert not np.array_equal(a, b)  # they were decoded from different bytes


# --------------------------------------------------------------------------- a checkpoint file's activation


class _Holder(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript_like_openai(state: dict, path) -> None:
    """A TorchScript archive holding ``state`` under OpenAI's names, with the three
    non-tensor entries OpenAI's ``ViT-B-32.pt`` carries, as OpenAI ships it (float16)."""
    root = _Holder()
    extra = {
        "input_resolution": torch.tensor(224),
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }
    for key, v in {**state, **extra}.items():
        *parents, leaf = key.split(".")
        node = root
        for name in parents:
            if name not in node._modules:
                node.add_module(name, _Holder())
            node = node._modules[name]
        node.register_buffer(leaf, v.half() if v.is_floating_point() else v)
    torch.jit.save(torch.jit.script(root), str(path))


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory, vit_b32_file):
    """ViT-B-32's random weights in each form a user copies to an offline machine: a plain
    open_clip state dict, OpenAI's TorchScript, and open_clip's file inside a copied Hugging
    Face cache folder of OpenAI's tag and of LAION's (GELU) tag."""
    root = tmp_path_factory.mktemp("ckpt")
    state = {k: v.half() for k, v in torch.load(vit_b32_file, weights_only=True).items()}
    plain = root / "open_clip_pytorch_model.bin"
    torch.save(state, plain)
    _torchscript_like_openai(state, root / "ViT-B-32.pt")
    files = {"plain": plain, "torchscript": root / "ViT-B-32.pt"}
    for kind, repo in [
        ("hub-openai", "timm--vit_base_patch32_clip_224.openai"),
        ("hub-laion", "laion--CLIP-ViT-B-32-laion2B-s34B-b79K"),
    ]:
        snap = root / "hub" / f"models--{repo}" / "snapshots" / "0123abcd"
        snap.mkdir(parents=True)
        (snap / plain.name).hardlink_to(plain)
        files[kind] = snap / plain.name
    return files


@pytest.mark.parametrize(
    ("kind", "expected"), [("torchscript", "QuickGELU"), ("hub-openai", "QuickGELU"), ("hub-laion", "GELU")]
)
def test_a_checkpoint_file_that_shows_its_weights_is_built_as_they_were_trained(checkpoint_files, kind, expected):
    """OpenAI's TorchScript file is OpenAI's weights; a file in a copied cache folder is that
    folder's tag: each is built with its activation, with every tensor loaded."""
    clip = load_clip("ViT-B-32", str(checkpoint_files[kind]))
    assert _activations(clip.model) == {expected} and clip.quick_gelu == (expected == "QuickGELU")
    same = load_clip("ViT-B-32", str(checkpoint_files["plain"]), quick_gelu=expected == "QuickGELU")
    assert clip.weights_digest == same.weights_digest  # the same tensors, whatever the file's form
    assert tag_quick_gelu("ViT-B-32", str(checkpoint_files[kind])) == (expected == "QuickGELU")


def test_a_checkpoint_file_that_does_not_show_its_activation_must_say_it(checkpoint_files):
    """A plain file for ViT-B-32 (OpenAI's QuickGELU or LAION's GELU weights alike) stops
    with both choices named; clip.quick_gelu or the -quickgelu name settles it; a choice the
    file contradicts is refused; an architecture with one activation needs nothing."""
    plain, ts = str(checkpoint_files["plain"]), str(checkpoint_files["torchscript"])
    with pytest.raises(ClipLoadError, match="clip.quick_gelu: true.*ViT-B-32-quickgelu.*clip.quick_gelu: false") as e:
        tag_quick_gelu("ViT-B-32", plain)
    assert e.value.key == "clip.pretrained" and "\n" not in str(e.value)
    assert tag_quick_gelu("ViT-B-32", plain, True) and not tag_quick_gelu("ViT-B-32", plain, False)
    assert tag_quick_gelu("ViT-B-32-quickgelu", plain)
    with pytest.raises(ClipLoadError, match="contradicts OpenAI's TorchScript") as e:
        tag_quick_gelu("ViT-B-32", ts, False)
    assert e.value.key == "clip.quick_gelu"
    with pytest.raises(ClipLoadError, match="trained with GELU"):
        tag_quick_gelu("ViT-B-32-quickgelu", str(checkpoint_files["hub-laion"]))
    with pytest.raises(ClipLoadError, match="contradicts"):
        tag_quick_gelu("ViT-B-32", "openai", False)
    assert not tag_quick_gelu(TINY, plain)  # no QuickGELU twin, no tag: as named


def test_the_parse_names_the_line_of_a_file_whose_activation_is_unsaid(checkpoint_files, tmp_path):
    """check-config and the workflow's parse stop in one line at the setting's file and line."""
    user = tmp_path / "my-weights.yaml"
    user.write_text(f"clip:\n  model: ViT-B-32\n  pretrained: {checkpoint_files['plain']}\n")
    config = merged(DEFAULTS, {"clip": {"model": "ViT-B-32", "pretrained": str(checkpoint_files["plain"])}})
    with pytest.raises(ConfigError, match=r"my-weights.yaml:3: clip.pretrained: the checkpoint file .* say which"):
        check_models(config, [user])
    check_models(merged(config, {"clip": {"quick_gelu": True}}), [user])


# --------------------------------------------------------------------------- the stage in steady state


def _embed_as_before(clip, files, batch_videos, dtype):
    """The stage's loop as it was before the card's pipeline: a loader decoding on the CPU,
    each group encoded and read back at once."""
    from moclip.clip.stream import _FrameCaches

    loader = torch.utils.data.DataLoader(_FrameCaches(files), batch_size=batch_videos, collate_fn=collate_frames)
    rows = [None] * len(files)
    with torch.no_grad():
        for batch in loader:
            for idx, group in batch.groups:
                for i, z in zip(idx, encode_videos(clip, group, torch.device("cpu")).cpu().numpy()):
                    rows[i] = z
    out = np.full((len(files), *next(r for r in rows if r is not None).shape), np.nan, dtype=dtype)
    for i, r in enumerate(rows):
        if r is not None:
            out[i] = r
    return out


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_the_cpu_path_writes_the_same_bytes_as_before(frame_caches, tmp_path, dtype):
    """The card's pipeline (decode on the device, copies back deferred to a shard's end)
    leaves the CPU path as it was: every shard's embeddings byte for byte, failed rows too."""
    root, ids = frame_caches
    clip = load_clip(TINY, "none")
    files = [root / "frames" / f"{v}.h5" for v in ids]
    shards = [FrameShard(ids[:4], files[:4], tmp_path / "a.h5"), FrameShard(ids[4:], files[4:], tmp_path / "b.h5")]
    stats = {}
    embed_shards(clip, shards, batch_videos=3, workers=1, dtype=dtype, stats=stats)
    got = np.concatenate([_stored_features(tmp_path / "a.h5"), _stored_features(tmp_path / "b.h5")])
    want = _embed_as_before(clip, files, 3, dtype)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert stats["images"] == 5 * 4 and 0 < stats["first_batch_s"] <= stats["seconds"]
    assert stats["images_after_first"] == 5 * 4 - 2 * 4  # the first batch: 3 videos, one of them failed


def _stored_features(path):
    with h5py.File(path) as f:
        return f["features"][()]


class _LoggedStreams:
    """A stand-in for the card's streams that logs what the stage asks of them."""

    def __init__(self, log):
        self.log, self.inside = log, False

    @contextlib.contextmanager
    def decoding(self):
        self.log.append("enter decode stream")
        self.inside = True
        yield
        self.inside = False
        self.log.append("leave decode stream")

    def before_decode(self):
        self.log.append("sync decode stream")

    def hand_over(self, x):
        self.log.append("hand over")
        return x


def test_each_decode_waits_for_the_previous_ones_readers_and_hands_its_frames_over(frame_caches, monkeypatch):
    """pytorch/vision#9606: the card's decode writes without waiting for any stream, so the
    stage synchronises the decode stream (whose only readers are the previous decode's
    stacking) before each decode, decodes and stacks with that stream current, and hands the
    frames to the encoder's stream before it reads them; it records one event a shard, none
    a batch (no host sync per batch). Logged with stand-in streams, JPEG decoded in the
    stage as on a card; the embeddings equal the CPU path's."""
    import moclip.clip.stream as cs

    root, ids = frame_caches
    log = []
    streams = _LoggedStreams(log)
    real_decode = cs.decode_frames

    def decode(videos, device):
        if streams.inside:
            log.append("decode")
        return real_decode(videos, device)

    monkeypatch.setattr(cs, "card_streams", lambda dev: streams)
    monkeypatch.setattr(cs, "decode_frames", decode)
    reader = cs._FrameCaches
    monkeypatch.setattr(cs, "_FrameCaches", lambda files, decode: reader(files, decode=False))  # bytes, as on a card
    monkeypatch.setattr(cs, "_event", lambda dev: log.append("event"))
    clip = load_clip(TINY, "none")
    encode = clip.model.encode_image
    clip.model.encode_image = lambda x: (log.append("encode"), encode(x))[1]
    files = [root / "frames" / f"{v}.h5" for v in ids]
    shards = [FrameShard(ids[:2], files[:2], root / "o1.h5"), FrameShard(ids[2:], files[2:], root / "o2.h5")]
    embed_shards(clip, shards, batch_videos=2, workers=0, dtype="float32")
    group = ["sync decode stream", "enter decode stream", "decode", "leave decode stream", "hand over", "encode"]
    # 6 videos, one failed, 2 a batch: groups of 2, 1 and 2; an event when each shard is complete
    assert log == [*group, "event", *group, *group, "event"]
    got = np.concatenate([_stored_features(root / "o1.h5"), _stored_features(root / "o2.h5")])
    monkeypatch.undo()
    assert got.tobytes() == _embed_as_before(clip, files, 2, "float32").tobytes()


def test_the_decoder_agreement_measures_grey_levels_and_cosines(frame_caches, monkeypatch):
    """decoder_agreement: the device's decode against the CPU's; the CPU against itself is
    exact, and frames two grey levels off are measured as such."""
    import moclip.clip.stream as cs

    root, ids = frame_caches
    clip = load_clip(TINY, "none")
    videos = [_stored(root / "frames" / f"{v}.h5") for v in ids if v != "v_Bad_g01_c01"]
    same = cs.decoder_agreement(clip, videos, "cpu", batch_videos=2)
    assert same["videos"] == 5 and same["frames"] == 20
    assert same["mean_abs_grey"] == 0 and same["max_abs_grey"] == 0 and same["cosine_min"] == pytest.approx(1, abs=1e-6)
    real = cs.to_device
    monkeypatch.setattr(cs, "to_device", lambda g, d, s: (real(g, d, s).to(torch.int16) + 2).clamp(0, 255).byte())
    off = cs.decoder_agreement(clip, videos, "cpu", batch_videos=2)
    assert 1.5 < off["mean_abs_grey"] <= 2 and off["max_abs_grey"] == 2 and off["cosine_min"] < 1
