"""A dataset's listing -> one manifest row per video (labels, groups, splits, shards).

The formats (UCF101, HMDB51, a CSV table, a folder) are read by :mod:`moclip.dataset.formats`;
here every format becomes the same columns (the table: :mod:`moclip.dataset.videos`), each split's
training part loses whole groups to validation, and each video gets its shard. A dataset summary (format, root, classes,
videos, where the groups came from) goes beside the manifest, for the reports.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from moclip.dataset.formats import Listing, count_videos, read_listing
from moclip.dataset.videos import SPLITS, ManifestError, Video, name_problems, shard_of, split_rows, write_manifest
from moclip.io import write_json
from moclip.settings import bound

log = logging.getLogger(__name__)


VAL_SHARE = (0.10, 0.15, 0.20)  # val_groups auto: at least, aiming at, at most this share of the training videos
UCF101_VAL_GROUPS = 0.12  # val_groups auto on UCF101's numbered groups: this share of them (3 of 25)
ValGroups = int | str  # a number of whole groups, or "auto"


def _val_rng(seed: int, split: int) -> random.Random:
    return random.Random(f"moclip-val-{seed}-split{split}")


def val_groups_for(train_groups: set[int], n_val: int, seed: int, split: int) -> set[int]:
    """``n_val`` whole groups held out of a split's training part for validation, fixed by the seed."""
    if n_val <= 0:
        return set()
    if n_val >= len(train_groups):
        raise ManifestError(
            f"split {split}: dataset.val_groups={n_val} would leave no training group "
            f"(training groups: {sorted(train_groups)})"
        )
    return set(_val_rng(seed, split).sample(sorted(train_groups), n_val))


def val_share_groups(train: list[tuple[str, int]], seed: int, split: int) -> set[int]:
    """Whole groups held out of a split's training videos ``train`` ((class, group) a video)
    for validation, seeded: first a group for each class in turn, so that every class is
    validated on, then more until about VAL_SHARE[1] of the videos; never above
    VAL_SHARE[2], and never a class's last training group. Groups may span classes
    (HMDB51's sources); a group is held out whole, with every class it holds. Where every
    group is above VAL_SHARE[2] (a small set in a few large groups), the smallest that
    leaves every class a training video is held out, with a warning: some validation
    beats none, which would select the last epoch unseen."""
    groups: dict[int, list[str]] = {}
    for cls, g in train:
        groups.setdefault(g, []).append(cls)
    rng = _val_rng(seed, split)
    order = sorted(groups)
    rng.shuffle(order)
    left = Counter(cls for cls, _ in train)  # the training videos each class keeps
    held: set[int] = set()
    n, taken = len(train), 0

    def take(g: int) -> bool:
        nonlocal taken
        per = {cls: groups[g].count(cls) for cls in set(groups[g])}
        if g in held or taken + len(groups[g]) > VAL_SHARE[2] * n or any(left[c] <= k for c, k in per.items()):
            return False
        held.add(g)
        taken += len(groups[g])
        for c, k in per.items():
            left[c] -= k
        return True

    classes = sorted(left)
    rng.shuffle(classes)
    covered: set[str] = set()
    for cls in classes:
        for g in order if cls not in covered else ():
            if cls in groups[g] and take(g):
                covered.update(groups[g])
                break
    for g in order:
        if taken >= VAL_SHARE[1] * n:
            break
        take(g)
    if not held:
        for g in sorted(order, key=lambda g: len(groups[g])):
            per = Counter(groups[g])
            if all(left[c] > k for c, k in per.items()):
                held.add(g)
                log.warning(
                    "split %d: every group holds more than %d%% of the %d training videos; validating on "
                    "one group of %d (%.0f%%)",
                    split,
                    round(100 * VAL_SHARE[2]),
                    n,
                    len(groups[g]),
                    100 * len(groups[g]) / n,
                )
                break
    return held


def build_manifest(
    videos: Path | str,
    lists: Path | str | None,
    splits: list[int] | tuple[int, ...] = SPLITS,
    val_groups: ValGroups = 0,
    num_shards: int | str = 1,
    seed: int = 0,
    format: str = "ucf101",
    classes: Path | str | None = None,
    videos_per_shard: int | None = None,
) -> list[Video]:
    """Read a dataset in ``format`` (see :func:`moclip.dataset.formats.read_listing`) into manifest
    rows (see :func:`manifest_rows`); ``num_shards`` ``auto``: as the workflow counts them,
    about ``videos_per_shard`` videos a shard (:func:`resolve_shards`)."""
    if problem := bound("dataset.shards").problem(num_shards):
        raise ManifestError(problem)
    listing = read_listing(format, videos, lists, splits, seed, classes)
    num_shards = resolve_shards(num_shards, videos_per_shard, lambda: count_videos(format, videos, lists, splits))
    entries = listing.entries.values()
    if bad := name_problems(videos, [e.rel for e in entries], {e.rel: e.where for e in entries if e.where != e.rel}):
        raise ManifestError("\n".join(bad))
    return manifest_rows(listing, splits, val_groups, num_shards, seed)


def manifest_rows(listing: Listing, splits, val_groups: ValGroups, num_shards: int, seed: int) -> list[Video]:
    """A listing as manifest rows sorted by (label, group, clip, id): whole groups of each
    split's training part become ``val`` (``val_groups`` of them, or with ``auto`` the
    format's rule: UCF101_VAL_GROUPS of UCF101's numbered groups, else VAL_SHARE of the
    videos with every class), chosen by ``seed``; unlabelled videos get label -1 and no
    split."""
    for k in splits if listing.classes else []:
        _hold_out_val(listing, k, val_groups, seed)
    labels = {name: i for i, name in enumerate(listing.classes)}
    out = [
        Video(
            video_id=vid,
            path=e.rel,
            class_name=e.class_name,
            label=labels.get(e.class_name, -1),
            group=e.group,
            clip=e.clip,
            shard=shard_of(vid, num_shards),
            **{f"split{k}": listing.assign[vid].get(k, "") if k in splits else "" for k in SPLITS},
        )
        for vid, e in listing.entries.items()
    ]
    out.sort(key=lambda v: (v.label, v.group, v.clip, v.video_id))
    return out


def _hold_out_val(listing: Listing, k: int, val_groups: ValGroups, seed: int) -> None:
    """Split ``k``'s training videos of whole groups become ``val`` (see
    :func:`manifest_rows`). A group in both train and test is an error where the format
    promises otherwise (UCF101), else a warning: its test clips may resemble training clips."""
    parts = {"train": set(), "test": set()}
    for vid, a in listing.assign.items():
        if a.get(k) in parts:
            parts[a[k]].add(listing.entries[vid].group)
    leaked = parts["train"] & parts["test"]
    if leaked and listing.separate_groups:
        raise ManifestError(f"split {k}: groups {sorted(leaked)} appear in both train and test lists")
    if leaked:
        log.warning("split %d: %d groups have videos in both train and test", k, len(leaked))
    if val_groups != "auto":
        held = val_groups_for(parts["train"], int(val_groups), seed, k)
    elif listing.separate_groups:  # UCF101's groups: numbered alike in every class
        every = {e.group for e in listing.entries.values()}
        held = val_groups_for(parts["train"], max(1, round(UCF101_VAL_GROUPS * len(every))), seed, k)
    else:
        entries = [listing.entries[vid] for vid, a in listing.assign.items() if a.get(k) == "train"]
        held = val_share_groups([(e.class_name, e.group) for e in entries], seed, k)
    for vid, a in listing.assign.items():
        if a.get(k) == "train" and listing.entries[vid].group in held:
            a[k] = "val"


def shard_count(n_videos: int, videos_per_shard: int) -> int:
    """Shards for ``n_videos``: the nearest whole number of ``videos_per_shard`` (at least 1).

    It changes only when the count crosses a midpoint, (k + 1/2) x videos_per_shard, so a
    few videos added to a dataset leave it as it is, and each new video changes one shard.
    """
    return max(1, (n_videos + videos_per_shard // 2) // videos_per_shard)


def resolve_shards(shards: int | str, videos_per_shard: int | None, count: Callable[[], int]) -> int:
    """``dataset.shards`` as a number: itself, or with ``auto`` the :func:`shard_count` of the
    videos ``count()`` gives (called only then): the workflow's parse and ``moclip manifest``
    alike, so both give a dataset the same shards."""
    if shards != "auto":
        return shards
    if videos_per_shard is None:
        raise ValueError("dataset.shards: auto needs dataset.videos_per_shard")
    return shard_count(count(), videos_per_shard)


# --------------------------------------------------------------------------- stage entry point


def dataset_summary(rows: list[Video], listing: Listing, format: str, videos, lists) -> dict:
    """What the reports say of the dataset: format, root, lists, classes, videos, where the
    validation groups came from, and each split's parts."""
    held_out = {
        "names": "whole groups named by the video files",
        "column": "whole groups of the table's group column",
        "mixed": "whole groups named by the video files; videos without one as seeded buckets of whole videos",
        "none": "seeded buckets of whole videos (the dataset names no groups)",
    }[listing.groups]
    if not listing.classes:
        held_out = "none (no labels: features only)"
    splits = {}
    for k in SPLITS:
        parts = split_rows(rows, k)
        if any(parts.values()):
            splits[str(k)] = {part: len(v) for part, v in parts.items()}
            splits[str(k)]["val_classes"] = len({r.label for r in parts["val"]})
    return {
        "format": format,
        "videos_root": str(videos),
        "lists": str(lists) if lists else None,
        "classes": len(listing.classes),
        "videos": len(rows),
        "validation": held_out,
        "splits": splits,
    }


def manifest(
    *,
    videos: Path | str,
    lists: Path | str | None,
    format: str,
    classes: Path | str | None,
    splits: list[int],
    val_groups: int,
    shards: int,
    seed: int,
    out: Path | str,
    summary: Path | str,
) -> list[Video]:
    """Rule ``manifest``: the dataset's listing -> the manifest TSV at ``out`` and the
    dataset summary JSON at ``summary``."""
    listing = read_listing(format, videos, lists, splits, seed, classes)
    rows = manifest_rows(listing, splits, val_groups, shards, seed)
    write_manifest(rows, out)
    info = dataset_summary(rows, listing, format, videos, lists)
    write_json(summary, info)
    log.info("%s dataset at %s: %d videos, %d classes, %d shards", format, videos, len(rows), info["classes"], shards)
    log.info("validation: %s", info["validation"])
    for k, p in info["splits"].items():
        share = p["val"] / max(1, p["train"] + p["val"])
        log.info(
            "split %s: %d train, %d val (%.1f%% of the training list; %d of %d classes), %d test",
            k,
            p["train"],
            p["val"],
            100 * share,
            p["val_classes"],
            info["classes"],
            p["test"],
        )
    return rows
