"""The methods a run compares, named once: zero-shot CLIP, the MV network alone, and the
heads trained on precomputed features, each with the streams it reads (one registry: a new
head is one entry of :data:`HEADS` and its test)."""

from __future__ import annotations

from dataclasses import dataclass

STREAMS = ("clip", "mv")  # the frozen features a head can read, in the order it concatenates them


@dataclass(frozen=True)
class Head:
    """A head trained on frozen features, per split: the ``streams`` whose features it reads
    (concatenated in :data:`STREAMS` order) and its network: ``linear`` (a probe) or ``mlp``
    (the paper's Linear -> ReLU -> Dropout -> Linear)."""

    streams: tuple[str, ...]
    net: str

    def reads(self, stream: str) -> bool:
        return stream in self.streams


HEADS = {
    "clip_linear": Head(("clip",), "linear"),
    "fusion": Head(("clip", "mv"), "mlp"),
}
METHODS = ("zeroshot", "mv_only", *HEADS)  # the order of every table
TRAINED = ("mv_only", *HEADS)  # the methods trained on the labels: the per-class plot's bars
# The head a run delivers: the report's confusion matrix, and the model `moclip predict`
# classifies with (named in each split report's artefacts by PRODUCT_MODEL).
PRODUCT = "fusion"
PRODUCT_MODEL = f"{PRODUCT}_model"
CONFUSION_PLOT = f"confusion_{PRODUCT}.png"  # a split report's confusion matrix, of the product's predictions
NOT_READ = {"clip": "no-clip", "mv": "no-mv"}  # a head's directory in place of a stream's tag it does not read


def head_inputs(head: str, clip_tag: str, mv_tag: str) -> str:
    """``<clip tag>/<mv tag>``, a head's outputs' directory under ``heads/``: the tags of the
    features it reads, ``no-clip``/``no-mv`` for a stream it does not, so a change to one
    stream reruns only the heads that read it."""
    h = HEADS[head]
    return "/".join(tag if h.reads(s) else NOT_READ[s] for s, tag in zip(STREAMS, (clip_tag, mv_tag)))


def lives_in(head: str, clip_dir: str, mv_dir: str) -> bool:
    """Whether ``heads/<clip_dir>/<mv_dir>/`` is a folder of ``head``'s (read back by ``moclip verify``)."""
    h = HEADS[head]
    return all(h.reads(s) == (d != NOT_READ[s]) for s, d in zip(STREAMS, (clip_dir, mv_dir)))


# Which head settings shape which heads: the others are left out of a head's settings (and
# so of what reruns it). Every other heads key shapes every head.
HEAD_SETTING_NEEDS = {"hidden": "mlp", "dropout": "mlp", "mv_draws": "mv", "frame_norm": "clip"}


def shapes(head: str, key: str) -> bool:
    """Whether heads setting ``key`` shapes ``head``'s outputs."""
    need, h = HEAD_SETTING_NEEDS.get(key), HEADS[head]
    return need is None or need == h.net or h.reads(need)
