"""The frozen CLIP image stream: model loading and per-shard frame embeddings (zero-shot
classification from them: :mod:`moclip.clip.zeroshot`).

One loading path serves an open_clip pretrained tag, a local checkpoint file and ``none``
(random weights, seeded). Embeddings are stored unnormalised, every cached frame of every
video, so pooling is a later choice and never a recomputation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from moclip.runtime import (
    Progress,
    autocast,
    autocast_dtype,
    log_startup,
    precision_name,
    resolve_device,
    use_threads,
)
from moclip.settings import FromConfig, default, did_you_mean
from moclip.shards import shard_attrs, write_shard
from moclip.video.cache import open_cache, read_index, video_file
from moclip.video.frames import StoredFrames, decode_frames, stored_frames

log = logging.getLogger(__name__)
__data__ = ("../model_configs",)  # package data this module reads: part of its code digest (moclip.workflow.provenance)
MODEL_CONFIGS = Path(__file__).parents[1] / "model_configs"
INTERPOLATIONS = ("bicubic", "bilinear")  # clip.interpolation: the preprocessing resize (open_clip's; the authors')
EMBEDDING_DTYPES = ("float16", "float32")  # clip.dtype: how the shards store the embeddings
open_clip.add_model_config(MODEL_CONFIGS)  # the project's small test/demo architectures


class _DropRandomInitWarning(logging.Filter):
    """open_clip warns on the root logger that a model has random weights; with
    ``pretrained: none`` that is what was asked for, and the reports say so."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


class ClipLoadError(RuntimeError):
    """Weights that cannot be loaded; the message says what to set instead, and ``key``
    names the config key at fault."""

    def __init__(self, message: str, key: str = "clip.pretrained"):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class ClipSettings(FromConfig):
    """Everything that shapes the CLIP embeddings (each a workflow param; defaults:
    config.yaml's ``clip``), recorded in every embedding shard it writes (``settings``),
    where ``moclip predict`` reads it back. The zero-shot prompts shape zero-shot only."""

    model: str = default("clip", "model")
    pretrained: str = default("clip", "pretrained")
    quick_gelu: bool | None = default("clip", "quick_gelu")
    interpolation: str = default("clip", "interpolation")
    precision: str = default("clip", "precision")
    batch_videos: int = default("clip", "batch_videos")
    cpu_threads: int = default("clip", "cpu_threads")
    dtype: str = default("clip", "dtype")
    seed: int = 0  # random weights' seed

    def load(self) -> Clip:
        """The frozen model as these settings build it (weights, resize)."""
        return replace(
            load_clip(self.model, self.pretrained, seed=self.seed, quick_gelu=self.quick_gelu),
            interpolation=self.interpolation,
        )

    @classmethod
    def of_shard(cls, path: Path | str) -> ClipSettings:
        """The settings an embedding shard was written with."""
        return cls.from_config(json.loads(shard_attrs(path)["settings"]))


@dataclass
class Clip:
    """A loaded, frozen CLIP model and what the rest of the pipeline needs to know about it."""

    model: torch.nn.Module
    name: str
    pretrained: str  # the tag, the checkpoint path, or "none"
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_digest: str
    interpolation: str = "bicubic"  # of the resize in preprocessing (open_clip's; the authors': bilinear)
    quick_gelu: bool = False  # built with QuickGELU (the weights' tag says they were trained with it)

    @property
    def random_weights(self) -> bool:
        return self.pretrained == "none"

    @property
    def architecture(self) -> str:
        """The network as built: the name, marked ``-quickgelu`` where the tag forced it."""
        return built_name(self.name, self.quick_gelu)


def state_digest(model: torch.nn.Module) -> str:
    """sha256 of the parameters and buffers actually loaded (names, shapes and bytes)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_clip(name: str, pretrained: str | None) -> str:
    """The weights' kind (``none``, a tag or a file) once ``name`` is a known open_clip
    architecture and ``pretrained`` a file or one of its tags; else ClipLoadError naming the
    nearest valid name. Cheap (registries only): run at parse time."""
    models = open_clip.list_models()
    if name not in models:
        raise ClipLoadError(
            f"clip.model: unknown open_clip architecture {name!r}{did_you_mean(name, models)}", key="clip.model"
        )
    kind = "none" if pretrained in (None, "none", "") else pretrained
    if kind != "none" and not Path(kind).is_file():
        tags = open_clip.list_pretrained_tags_by_model(name)
        if kind not in tags:
            raise ClipLoadError(
                f"clip.pretrained: {kind!r} is neither a file nor a pretrained tag of {name}"
                f"{did_you_mean(kind, tags)} (tags: {', '.join(tags) or 'none'}; or none for random weights)"
            )
    return kind


def tag_quick_gelu(name: str, pretrained: str | None, quick_gelu: bool | None = None) -> bool:
    """Whether the network for these weights is built with QuickGELU: as a tag's open_clip
    metadata says (OpenAI's and several others'; open_clip 3 builds GELU for them and only
    warns), as a checkpoint file shows (:func:`file_quick_gelu`), or as ``clip.quick_gelu`` /
    a ``-quickgelu`` architecture says. A file that shows nothing, for an architecture whose
    tags come with either activation, must be said: ClipLoadError naming both choices. A
    stated choice that contradicts what the weights show is refused too."""
    kind = check_clip(name, pretrained)
    named = name.endswith("-quickgelu")
    if kind == "none":
        known, source = None, ""
    elif Path(kind).is_file():
        known, source = file_quick_gelu(name, kind)
    else:
        known = named or bool(open_clip.pretrained.get_pretrained_cfg(name, kind).get("quick_gelu"))
        source = f"the tag {kind!r} of {name}"
    if named and known is False:
        raise ClipLoadError(
            f"clip.model: {name} builds QuickGELU, but {source} was trained with GELU", key="clip.model"
        )
    if named and quick_gelu is False:
        raise ClipLoadError(f"clip.quick_gelu: false contradicts clip.model: {name}", key="clip.quick_gelu")
    if quick_gelu is not None and known is not None and quick_gelu != known:
        raise ClipLoadError(
            f"clip.quick_gelu: {str(quick_gelu).lower()} contradicts {source}, trained with "
            f"{'QuickGELU' if known else 'GELU'}: drop clip.quick_gelu (null) or set it to {str(known).lower()}",
            key="clip.quick_gelu",
        )
    if named or known is not None:
        return named or known
    if quick_gelu is not None:
        return quick_gelu
    if kind != "none" and has_quick_gelu_twin(name):
        raise ClipLoadError(
            f"clip.pretrained: the checkpoint file {kind} does not show which activation its weights were "
            f"trained with, and {name} comes with either (OpenAI's weights: QuickGELU; LAION's: GELU); say which: "
            f"clip.quick_gelu: true (or clip.model: {name}-quickgelu) for OpenAI's weights, clip.quick_gelu: false "
            "for GELU ones. Or copy the Hugging Face cache folder the file came from, which keeps its tag"
        )
    return False


def has_quick_gelu_twin(name: str) -> bool:
    """Whether weights for architecture ``name`` come with QuickGELU as well as GELU: a
    ``-quickgelu`` twin in open_clip, or one of its tags marked QuickGELU."""
    if name.endswith("-quickgelu"):
        return False
    tags = open_clip.list_pretrained_tags_by_model(name)
    return f"{name}-quickgelu" in open_clip.list_models() or any(
        open_clip.pretrained.get_pretrained_cfg(name, t).get("quick_gelu") for t in tags
    )


def is_torchscript(path: Path | str) -> bool:
    """A TorchScript archive (OpenAI's own CLIP checkpoints, ``ViT-B-32.pt``): a zip holding
    ``constants.pkl``, as torch.load tells them apart."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def hub_repo(path: Path | str) -> str | None:
    """The Hugging Face repository a file sits in, from its cache folder's name
    (``.../models--timm--vit_base_patch32_clip_224.openai/snapshots/<rev>/file``), or None."""
    for part in reversed(Path(path).parts):
        if part.startswith("models--") and "--" in part[len("models--") :]:
            org, _, repo = part[len("models--") :].partition("--")
            return f"{org}/{repo}"
    return None


def file_quick_gelu(name: str, path: Path | str) -> tuple[bool | None, str]:
    """(QuickGELU or not, as the checkpoint file shows it; what showed it): OpenAI's
    TorchScript archives are OpenAI's weights, trained with QuickGELU; a file inside a copied
    Hugging Face cache folder is the tag of ``name`` whose hub repository that folder is.
    (None, "") where the file shows nothing."""
    if is_torchscript(path):
        return True, f"OpenAI's TorchScript checkpoint {path}"
    repo = hub_repo(path)
    if repo:
        base = name.removesuffix("-quickgelu")  # a twin's tags are its base's, OpenAI's among them
        for tag in open_clip.list_pretrained_tags_by_model(base):
            cfg = open_clip.pretrained.get_pretrained_cfg(base, tag)
            if cfg.get("hf_hub", "").rstrip("/").split("/")[:2] == repo.split("/"):
                return bool(cfg.get("quick_gelu")), f"{path} (the tag {tag!r} of {base}, by its cache folder)"
    return None, ""


def load_torchscript_weights(model: torch.nn.Module, path: Path | str) -> None:
    """OpenAI's TorchScript checkpoint's weights into ``model`` (strict: every tensor named
    and shaped as the architecture asks). torch.load refuses TorchScript with
    ``weights_only=True``; torch.jit.load runs no pickled Python."""
    state = torch.jit.load(str(path), map_location="cpu").state_dict()
    for key in ("input_resolution", "context_length", "vocab_size"):  # OpenAI's, not parameters
        state.pop(key, None)
    model.load_state_dict(state, strict=True)


def built_name(name: str, quick_gelu: bool) -> str:
    """An architecture's name as built: ``ViT-B-32`` with QuickGELU is ``ViT-B-32-quickgelu``."""
    return f"{name}-quickgelu" if quick_gelu and not name.endswith("-quickgelu") else name


def load_clip(
    name: str,
    pretrained: str | None,
    device: str = "cpu",
    seed: int = 0,
    cache_dir: str | None = None,
    quick_gelu: bool | None = None,
) -> Clip:
    """Load an open_clip model from a pretrained tag, a local checkpoint file (open_clip's,
    or OpenAI's TorchScript), or ``none``, with the activation its weights were trained with
    (:func:`tag_quick_gelu`; ``quick_gelu``: clip.quick_gelu, where the weights do not show it).

    Tags resolve through open_clip's registry and the Hugging Face cache (``cache_dir``).
    """
    kind = check_clip(name, pretrained)
    quick = tag_quick_gelu(name, kind, quick_gelu)
    torchscript = kind != "none" and Path(kind).is_file() and is_torchscript(kind)
    torch.manual_seed(seed)  # random initialisation ('none') is fixed by the seed
    quiet = _DropRandomInitWarning() if kind == "none" or torchscript else None  # random weights were asked for
    if quiet:
        logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(
            name,
            pretrained=None if kind == "none" or torchscript else kind,
            device="cpu" if torchscript else device,
            cache_dir=cache_dir,
            force_quick_gelu=quick,
        )
        if torchscript:
            load_torchscript_weights(model, kind)
            model.to(device)
    except Exception as e:  # open_clip raises RuntimeError, OSError, HTTP errors ... when offline
        raise ClipLoadError(
            f"could not load pretrained weights {kind!r} for {name}: {type(e).__name__}: {e}\n"
            "Without network access, download the weights on a machine that has it (they land in "
            "the Hugging Face cache) and copy its cache folder (models--...) into this machine's cache, "
            "which keeps the tag; or set clip.pretrained to the file's path and, for OpenAI's weights "
            "in open_clip's format, clip.quick_gelu: true; or clip.pretrained: none for random weights."
        ) from e
    finally:
        if quiet:
            logging.getLogger().removeFilter(quiet)
    model.eval().requires_grad_(False)
    cfg = model.visual.preprocess_cfg
    size = cfg["size"]
    return Clip(
        model=model,
        name=name,
        pretrained=kind,
        image_size=size if isinstance(size, int) else size[0],
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        weights_digest=state_digest(model),
        quick_gelu=quick,
    )


def preprocess(frames: torch.Tensor, size: int, mean, std, interpolation: str = "bicubic") -> torch.Tensor:
    """CLIP's preprocessing on a uint8 batch [N, H, W, 3], on the batch's device: shorter
    side to ``size`` (``interpolation``: bicubic or bilinear, antialiased), centre crop,
    scale to [0, 1], normalise. Returns float32 [N, 3, size, size]."""
    x = frames.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    x = F.interpolate(x, size=(nh, nw), mode=interpolation, align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top : top + size, left : left + size].clamp_(0, 255) / 255.0
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    sd = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / sd


class _FrameCaches(torch.utils.data.Dataset):
    """One video's cached frames a item (None for a failed video): DataLoader workers read
    them, and decode JPEG when ``decode`` (the CPU) or leave it to the encoder's device;
    preprocessing runs batched on that device."""

    def __init__(self, files: list[Path], decode: bool = True):
        self.files, self.decode = files, decode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, StoredFrames | None]:
        with open_cache(self.files[i]) as f:
            if f.attrs["status"] != "ok":
                return i, None
            stored = stored_frames(f)
        if self.decode and stored.raw is None:
            stored.raw, stored.jpeg = decode_frames([stored])[0], None
        return i, stored


@dataclass
class FrameBatch:
    """A loader batch: the videos of each frame size and storage together, raw frames
    stacked into one uint8 tensor [n, K, H, W, 3] (in the worker, so that the loader pins
    exactly what is copied to the device), JPEG ones a list of their StoredFrames (decoded
    on the device, one call a group); and the indices of the videos that failed."""

    groups: list[tuple[list[int], torch.Tensor | list[StoredFrames]]]
    failed: list[int]

    def pin_memory(self) -> FrameBatch:
        return FrameBatch([(i, x.pin_memory() if torch.is_tensor(x) else x) for i, x in self.groups], self.failed)


def _frames(x: torch.Tensor | StoredFrames) -> StoredFrames:
    return x if isinstance(x, StoredFrames) else StoredFrames("", tuple(x.shape[:3]), raw=x)


def collate_frames(items: list[tuple[int, torch.Tensor | StoredFrames | None]]) -> FrameBatch:
    """Loader items (index, frames or None) -> a FrameBatch, videos in order within a group."""
    by_kind: dict[tuple, list[tuple[int, StoredFrames]]] = {}
    for i, x in items:
        if x is not None:
            x = _frames(x)
            by_kind.setdefault((x.encoding, x.shape), []).append((i, x))
    groups = [
        ([i for i, _ in g], torch.stack([x.raw for _, x in g]) if enc == "raw" else [x for _, x in g])
        for (enc, _), g in by_kind.items()
    ]
    return FrameBatch(groups, [i for i, x in items if x is None])


def videos_tensor(group: torch.Tensor | list[StoredFrames], device: torch.device) -> torch.Tensor:
    """A FrameBatch group as uint8 [n, K, H, W, 3] on ``device``: JPEG decoded there
    (one call: :func:`to_device`)."""
    return to_device(group, device, card_streams(device))


def preprocess_batch(frames: list[torch.Tensor], clip: Clip, device: torch.device) -> torch.Tensor:
    """Videos' uint8 frames moved to ``device`` and preprocessed there, one batched call a
    frame size: [sum K, 3, S, S], videos in order."""
    batch = collate_frames(list(enumerate(frames)))
    parts: list[torch.Tensor | None] = [None] * len(frames)
    for js, x in batch.groups:
        for j, y in zip(js, preprocess_videos(videos_tensor(x, device), clip, device)):
            parts[j] = y
    return torch.cat(parts)


def preprocess_videos(frames: torch.Tensor, clip: Clip, device: torch.device) -> torch.Tensor:
    """uint8 [n, K, H, W, 3] -> [n, K, 3, S, S] preprocessed on ``device`` (copied there
    without blocking when ``frames`` is pinned)."""
    x = frames.to(device, non_blocking=True)
    y = preprocess(x.flatten(0, 1), clip.image_size, clip.mean, clip.std, clip.interpolation)
    return y.unflatten(0, x.shape[:2])


def encode_videos(clip: Clip, frames: torch.Tensor, device: torch.device, amp=None) -> torch.Tensor:
    """Frame embeddings [n, K, D] (float32, on ``device``) of videos' uint8 frames
    [n, K, H, W, 3], under autocast ``amp`` (None: float32)."""
    x = preprocess_videos(frames, clip, device)
    with autocast(device, amp):
        z = clip.model.encode_image(x.flatten(0, 1))
    return z.float().unflatten(0, x.shape[:2])


@dataclass(frozen=True)
class FrameShard:
    """One shard to embed: its videos' ids, their frame caches (in the same order) and the
    shard file to write."""

    video_ids: list[str]
    files: list[Path]
    out: Path


class CardStreams:
    """The ordering of the card's JPEG decode against the encoder (the stream that reads
    what it decodes). torchvision's CUDA ``decode_jpeg`` allocates its outputs on the
    current stream, then writes them from a stream of its own without waiting for any
    (pytorch/vision#9606): a block freed on the current stream while kernels queued there
    still read it can be overwritten. So the decode runs with a stream of ours current
    (``decode``), whose only readers are the stacking of the decoded images: it is
    synchronised before each decode (the previous decode's stacking done; the encoder's
    stream not waited for, so the decode of group k+1 overlaps the encoding of group k).
    The stacked frames are handed to the encoder's stream (``main``) without a host sync:
    it waits for ``decode``'s work, and the allocator keeps their block until ``main``'s
    work queued before their release is done (``record_stream``). On the CPU, no streams."""

    def __init__(self, device: torch.device):
        cuda = device.type == "cuda"
        self.main = torch.cuda.current_stream(device) if cuda else None
        self.decode = torch.cuda.Stream(device) if cuda else None

    def decoding(self):
        """Context: the decode and the stacking of its images run on ``decode``."""
        return torch.cuda.stream(self.decode) if self.decode is not None else contextlib.nullcontext()

    def before_decode(self) -> None:
        """Host wait for ``decode``'s earlier work (the only reader of the blocks a decode is handed)."""
        if self.decode is not None:
            self.decode.synchronize()

    def hand_over(self, x: torch.Tensor) -> torch.Tensor:
        """``x``, made on ``decode``, for kernels on ``main``: ordered on the card, no host sync."""
        if self.decode is not None:
            self.main.wait_stream(self.decode)
            x.record_stream(self.main)
        return x


def card_streams(device: torch.device) -> CardStreams:
    return CardStreams(device)


def to_device(group: torch.Tensor | list[StoredFrames], device: torch.device, streams: CardStreams) -> torch.Tensor:
    """A FrameBatch group as uint8 [n, K, H, W, 3] on ``device``, for the encoder's stream:
    raw frames copied there, JPEG ones decoded there in one call (:class:`CardStreams`)."""
    if torch.is_tensor(group):
        return group.to(device, non_blocking=True)
    streams.before_decode()
    with streams.decoding():
        x = torch.stack(decode_frames(group, device))
    return streams.hand_over(x)


def to_host(z: torch.Tensor) -> torch.Tensor:
    """Embeddings to the host without waiting for them: a pinned buffer filled by an
    asynchronous copy on a GPU (read it after an event recorded later is done); a plain
    copy from any other device (``z`` itself on the CPU)."""
    if z.device.type != "cuda":
        return z.cpu()
    out = torch.empty(z.shape, dtype=z.dtype, pin_memory=True)
    return out.copy_(z, non_blocking=True)


def _event(device: torch.device):
    """An event recorded now on the device's current stream (None on the CPU): the copies
    queued before it are done once it is."""
    if device.type != "cuda":
        return None
    e = torch.cuda.Event()
    e.record()
    return e


@torch.no_grad()
def embed_shards(
    clip: Clip,
    shards: list[FrameShard],
    batch_videos: int = 16,
    workers: int = 1,
    device: str = "cpu",
    dtype: str = "float16",
    precision: str = "auto",
    recorded: ClipSettings | None = None,
    stats: dict | None = None,
) -> list[np.ndarray]:
    """Embed every cached frame of ``shards`` with one model on ``device`` and one loader
    over all their videos (a GPU job's fixed costs paid once, its workers alive for the
    whole stage), writing each shard's file once its last video's embeddings are back on
    the host; return each shard's valid mask. On a GPU the workers only read JPEG bytes,
    which are decoded on the card a group at a time (:func:`to_device`), and nothing waits
    for the card per batch: embeddings come back by asynchronous copies into pinned
    memory, a shard's file written when they have landed.

    A shard file holds ``video_id`` [N], ``features`` [N, K, D] (unnormalised; NaN rows for
    failed videos), ``valid`` bool [N], and attrs naming the model, the weights' digest and
    the arithmetic (``precision``: see :func:`moclip.runtime.autocast_dtype`), and the
    ``recorded`` settings that made them (the workflow's). ``stats``, when given, gets the
    stage's timings: ``first_batch_s`` and ``seconds`` (wall, from the call), ``images`` and
    ``images_after_first`` (for the steady-state rate).
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    clip.model.to(dev)
    amp = autocast_dtype(dev, precision)
    ds = _FrameCaches([f for sh in shards for f in sh.files], decode=dev.type == "cpu")
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_videos,
        num_workers=workers,
        collate_fn=collate_frames,
        pin_memory=dev.type == "cuda",
        persistent_workers=workers > 0,
    )
    streams = card_streams(dev)
    ends = np.cumsum([len(sh.files) for sh in shards])
    feats: list[torch.Tensor | None] = [None] * len(ds)  # a video's embeddings on the host (or landing there)
    masks: list[np.ndarray] = []
    pending: list[tuple[int, object]] = []  # shards whose copies are queued: (shard, event)
    progress = Progress("videos", len(ds), log)
    images = first = 0

    def write(k: int) -> None:
        rows = feats[ends[k] - len(shards[k].files) : ends[k]]
        masks.append(_write_clip_shard(clip, shards[k], rows, dtype, dev, amp, recorded))
        feats[ends[k] - len(shards[k].files) : ends[k]] = [None] * len(rows)

    for batch in loader:
        for idx, group in batch.groups:
            z = to_host(encode_videos(clip, to_device(group, dev, streams), dev, amp))
            images += z.shape[0] * z.shape[1]
            for i, zi in zip(idx, z):
                feats[i] = zi
        log_startup(log)
        if stats is not None and not first:
            first = images or -1
            stats["first_batch_s"] = time.perf_counter() - t0
        progress.update(sum(len(i) for i, _ in batch.groups) + len(batch.failed))
        while len(masks) + len(pending) < len(shards) and progress.done >= ends[len(masks) + len(pending)]:
            pending.append((len(masks) + len(pending), _event(dev)))  # shards finish in order
        while pending and (pending[0][1] is None or pending[0][1].query()):
            write(pending.pop(0)[0])
    for k, event in pending:
        if event is not None:
            event.synchronize()
        write(k)
    progress.close()
    while len(masks) < len(shards):  # empty shards
        masks.append(_write_clip_shard(clip, shards[len(masks)], [], dtype, dev, amp, recorded))
    if stats is not None:
        stats.update(seconds=time.perf_counter() - t0, images=images, images_after_first=images - max(first, 0))
    return masks


def _write_clip_shard(
    clip: Clip, shard: FrameShard, rows: list, dtype: str, dev: torch.device, amp, recorded: ClipSettings | None
) -> np.ndarray:
    valid = np.array([f is not None for f in rows], bool)
    shape = tuple(next(f for f in rows if f is not None).shape) if valid.any() else (0, clip.model.visual.output_dim)
    arr = np.full((len(rows), *shape), np.nan, dtype=dtype)
    for i, f in enumerate(rows):
        if f is not None:
            arr[i] = f.numpy()
    write_shard(
        shard.out,
        shard.video_ids,
        arr,
        valid,
        model=clip.name,
        pretrained=clip.pretrained,
        weights_digest=clip.weights_digest,
        random_weights=clip.random_weights,
        architecture=clip.architecture,
        image_size=clip.image_size,
        interpolation=clip.interpolation,
        device=dev.type,
        precision=precision_name(amp),
        **({"settings": json.dumps(asdict(recorded))} if recorded else {}),
    )
    return valid


def embed_frame_caches(
    clip: Clip, frame_files: list[Path], video_ids: list[str], out: Path | str, *args, **kwargs
) -> np.ndarray:
    """:func:`embed_shards` for one shard (``frame_files`` -> ``out``); its valid mask."""
    return embed_shards(clip, [FrameShard(list(video_ids), list(frame_files), Path(out))], *args, **kwargs)[0]


@torch.no_grad()
def decoder_agreement(
    clip: Clip, videos: list[StoredFrames], device: str, batch_videos: int = 64, precision: str = "auto"
) -> dict:
    """``device``'s JPEG decode (nvJPEG on CUDA, as the stage runs it: :func:`to_device`)
    against the CPU decoder's on the same frames (the JPEG ones of ``videos``): the mean
    and the largest absolute difference in grey levels (0-255, every channel of every
    pixel), and the cosine of each frame's CLIP embedding of the two decodes (both encoded
    on ``device``): mean and smallest."""
    dev = resolve_device(device)
    clip.model.to(dev)
    amp = autocast_dtype(dev, precision)
    streams = card_streams(dev)
    total, count, worst, cos = 0.0, 0, 0, []
    jpeg = [v for v in videos if v.encoding == "jpeg"]
    for start in range(0, len(jpeg), batch_videos):
        for _, group in collate_frames(list(enumerate(jpeg[start : start + batch_videos]))).groups:
            ours = to_device(group, dev, streams)
            cpu = torch.stack(decode_frames(group, "cpu")).to(dev)
            d = (ours.to(torch.int16) - cpu.to(torch.int16)).abs()
            total += float(d.sum(dtype=torch.float64))
            count += d.numel()
            worst = max(worst, int(d.max()))
            za, zb = encode_videos(clip, ours, dev, amp), encode_videos(clip, cpu, dev, amp)
            cos.append(F.cosine_similarity(za.flatten(0, 1), zb.flatten(0, 1), dim=-1).cpu())
    c = torch.cat(cos) if cos else torch.zeros(0)
    return {
        "device": dev.type,
        "videos": len(jpeg),
        "frames": len(c),
        "mean_abs_grey": total / count if count else None,
        "max_abs_grey": worst if count else None,
        "cosine_mean": float(c.mean()) if len(c) else None,
        "cosine_min": float(c.min()) if len(c) else None,
    }


# --------------------------------------------------------------------------- stage entry points


def clip_embed(
    *,
    frames: list[Path | str],
    index: list[Path | str],
    out: list[Path | str],
    settings: ClipSettings,
    device: str,
    threads: int = 1,
) -> list[np.ndarray]:
    """Rule ``clip_embed``: every cached frame of each shard (its ``frames[k]`` directory and
    ``index[k]``) embedded with the frozen image encoder into the shard file ``out[k]``:
    one shard a job on the CPU, every shard in one job on a GPU (one start-up); torch
    computes with ``settings.cpu_threads`` threads and ``threads - 1`` processes (the job's
    other cores) read the caches: neither changes a number."""
    use_threads(settings.cpu_threads, "clip.cpu_threads", threads)
    s = settings
    clip = s.load()
    shards = []
    for fr, ix, o in zip(frames, index, out, strict=True):
        ids = [r.video_id for r in read_index(ix)]
        shards.append(FrameShard(ids, [video_file(fr, v) for v in ids], Path(o)))
    workers = max(0, threads - 1)
    return embed_shards(clip, shards, s.batch_videos, workers, device, s.dtype, s.precision, recorded=s)
