"""The features a run made, read back for a user's own code (:func:`load_features`) and
written in the layouts other tools read (:func:`export_npy`, :func:`export_table`:
``moclip export``).

Each stream is a reader registered by name in :data:`READERS` (``clip``, ``mv``, and the
dense stage's per-window ``dense_clip`` and ``dense_mv``); every reader returns one
:class:`Features`, rows in manifest order. numpy and h5py are imported by the readers, not
here, so ``import moclip`` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from moclip.dataset.videos import Video, class_names, read_manifest
from moclip.io import atomic_path, read_json
from moclip.outputs import current_tags, shard_name

if TYPE_CHECKING:
    import numpy as np

LAYOUTS = ("npy", "table")  # moclip export --layout: one .npy a video and stream, or one .npz table a stream


@dataclass(frozen=True)
class Features:
    """One stream's rows (a video's, or one a window of it). ``vectors`` float32 [N, D]: a
    video's pooled vector or a window's; ``unpooled`` float32 [N, K, D] before pooling (clip:
    the K cached frames, mv: the K evaluation segments; None for per-window streams);
    ``times`` float64 [N, 2] start and end in seconds from the video's first frame (None for
    whole-video features); ``labels`` int64 [N] indices into ``classes`` (both None in a run
    without labels); ``parts`` each row's part of ``split`` (None without one); ``failed``
    the videos without features (their decode failed); ``files`` the files read; ``attrs``
    what made them (the first file's attributes: model, weights, precision)."""

    stream: str
    ids: list[str]
    vectors: np.ndarray
    unpooled: np.ndarray | None = None
    times: np.ndarray | None = None
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    parts: list[str] | None = None
    split: int | None = None
    failed: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)


# A reader: (results, stream, split=, experiment=, tag=) -> Features.
Reader = Callable[..., Features]
READERS: dict[str, Reader] = {}


def reader(*streams: str) -> Callable[[Reader], Reader]:
    """Register a function as the reader of ``streams``."""

    def register(fn: Reader) -> Reader:
        READERS.update(dict.fromkeys(streams, fn))
        return fn

    return register


def load_features(
    results: Path | str,
    stream: str,
    split: int | None = None,
    experiment: str | None = None,
    *,
    tag: str | None = None,
) -> Features:
    """The features of ``stream`` that the run in ``results`` made, one :class:`Features`.

    ``split``: keep that split's videos and give their parts (mv: the split's network, which
    a labelled run's MV features need); ``experiment``: an experiment's features, as its
    reports name them; ``tag``: which configuration's, where the results hold several (by
    default the one the reports were made from). A stage the folder does not hold is a
    FileNotFoundError naming the folder and the rule that makes it."""
    if stream not in READERS:
        raise ValueError(f"stream {stream!r}: not one of {', '.join(sorted(READERS))}")
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: not a directory (a run's results)")
    if experiment is not None and tag is not None:
        raise ValueError("pass experiment or tag, not both: an experiment's reports name its tags")
    return READERS[stream](results, stream, split=split, experiment=experiment, tag=tag)


# --------------------------------------------------------------------------- rows and labels


def manifest_rows(results: Path) -> list[Video]:
    path = results / "manifest.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest (rule manifest: run the workflow first)")
    return read_manifest(path)


def features_of(
    results: Path,
    stream: str,
    ids: list[str],
    vectors: np.ndarray,
    *,
    unpooled: np.ndarray | None = None,
    times: np.ndarray | None = None,
    split: int | None = None,
    failed: list[str] | None = None,
    files: list[Path] | None = None,
    attrs: dict | None = None,
    where: Path | None = None,
    rows: list[Video] | None = None,
) -> Features:
    """Rows read from a stream's files (``ids`` [N], a video's rows in time order) as
    :class:`Features`: in manifest order (stable, so a video's rows keep theirs), with the
    manifest's labels, and with ``split`` only that split's videos and their parts. A video
    of the manifest missing from the files (or one the manifest does not know) is an error
    naming ``where``, the folder read: outputs of another manifest. ``rows``: the manifest,
    where the caller has read it already."""
    import numpy as np

    rows = manifest_rows(results) if rows is None else rows
    order = {r.video_id: i for i, r in enumerate(rows)}
    failed = sorted(failed or [], key=lambda v: order.get(v, len(order)))
    where = where or results
    if unknown := [v for v in dict.fromkeys([*ids, *failed]) if v not in order]:
        raise ValueError(f"{where}: video {unknown[0]!r} is not in {results / 'manifest.tsv'} (outputs of another run)")
    have = {*ids, *failed}
    if missing := [r.video_id for r in rows if r.video_id not in have]:
        raise ValueError(f"{where}: no features of video {missing[0]!r} of the manifest ({len(missing)} missing)")
    labelled = any(r.label >= 0 for r in rows)
    if split is not None and not labelled:
        raise ValueError(f"split={split}: {results} is a run without labels (no splits)")
    by_id = {r.video_id: r for r in rows}
    keep = [
        i for i in sorted(range(len(ids)), key=lambda i: order[ids[i]]) if split is None or by_id[ids[i]].split(split)
    ]
    if split is not None:
        failed = [v for v in failed if by_id[v].split(split)]

    def take(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[np.asarray(keep, np.int64)]

    kept = [ids[i] for i in keep]
    return Features(
        stream=stream,
        ids=kept,
        vectors=take(vectors),
        unpooled=take(unpooled),
        times=take(times),
        labels=np.array([by_id[v].label for v in kept], np.int64) if labelled else None,
        classes=class_names(rows) if labelled else None,
        parts=[by_id[v].split(split) for v in kept] if split is not None else None,
        split=split,
        failed=failed,
        files=list(files or []),
        attrs=dict(attrs or {}),
    )


# --------------------------------------------------------------------------- where a stage's files are


def experiment_root(results: Path, experiment: str | None) -> Path:
    """Where an experiment's own outputs live: the top level for none, and for one equal to
    the run (the comparison records each experiment's root)."""
    if experiment is None:
        return results
    comparison = results / "experiments.json"
    roots = read_json(comparison).get("roots", {}) if comparison.is_file() else {}
    if experiment in roots:
        return Path(os.path.normpath(results / roots[experiment]))
    root = results / "experiments" / experiment
    if not root.is_dir():
        folder = results / "experiments"
        have = set(roots) | ({p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set())
        raise FileNotFoundError(f"{root}: no such experiment (the run's: {', '.join(sorted(have)) or 'none'})")
    return root


def _report(results: Path, experiment: str, split: int | None) -> tuple[Path, dict]:
    """An experiment's report of ``split`` (any split's without one) and its artefacts."""
    reports = experiment_root(results, experiment) / "reports"
    files = [reports / f"split{split}" / "metrics.json"] if split else sorted(reports.glob("split*/metrics.json"))
    if not files or not files[0].is_file():
        raise FileNotFoundError(
            f"{files[0] if files else reports}: no report of experiment {experiment!r} (its features are found by "
            "its reports: run the workflow to the end)"
        )
    return files[0], read_json(files[0])["artefacts"]


def _artefact(report: Path, artefacts: dict, key: str) -> Path:
    if key not in artefacts:
        raise ValueError(f"{report}: names no {key} (artefacts: {', '.join(artefacts)})")
    return Path(os.path.normpath(report.parent / artefacts[key]))  # relative to the report; normpath keeps links


def tag_folder(results: Path, kind: str, rule: str, experiment: str | None, tag: str | None, split: int | None) -> Path:
    """``<root>/embeddings/<kind>/<tag>``: ``kind`` clip or mv, the tag given, the only one,
    or the one the reports were made from; an experiment's, as its report of ``split`` names
    it (its MV features: under its own root, else under its network's, whose features they
    are: experiments that share a network share those)."""
    if experiment is not None:
        report, art = _report(results, experiment, split)
        if kind == "clip":
            return _artefact(report, art, "clip_embeddings").parent
        model = _artefact(report, art, "mv_model")  # <root>/mvnet/<tag>/split<k>/model.pt
        folders = [
            root / "embeddings" / "mv" / model.parts[-3]
            for root in (experiment_root(results, experiment), model.parents[3])
        ]
        if found := [f for f in folders if f.is_dir()]:
            return found[0]
        raise FileNotFoundError(f"{folders[-1]}: no MV features of {model} (rule {rule}: run the workflow to the end)")
    base = results / "embeddings" / kind
    tags = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if not tags:
        raise FileNotFoundError(f"{base}: no {kind} features (rule {rule}: run the workflow first)")
    if tag is not None:
        if tag not in tags:
            raise FileNotFoundError(f"{base / tag}: no such tag (the run's: {', '.join(tags)})")
        return base / tag
    if len(tags) == 1:
        return base / tags[0]
    reports = {int(p.name[5:]): p for p in (results / "reports").glob("split*") if p.name[5:].isdigit()}
    now = current_tags(reports, results)[0 if kind == "clip" else 1]
    if now in tags:
        return base / now
    raise ValueError(f"{base}: features of several configurations ({', '.join(tags)}): pass one as tag= (--tag)")


def shard_files(folder: Path, rows: list[Video], rule: str) -> list[Path]:
    """The shard files of ``folder`` that hold the manifest's videos, each checked to exist."""
    files = [folder / f"{shard_name(n)}.h5" for n in sorted({r.shard for r in rows})]
    if missing := [f for f in files if not f.is_file()]:
        raise FileNotFoundError(
            f"{missing[0]}: missing ({len(missing)} of {len(files)} shards; rule {rule} makes them)"
        )
    return files


def _read_shards(results: Path, stream: str, folder: Path, rule: str, split: int | None, pool) -> Features:
    import numpy as np

    from moclip.shards import read_shard

    rows = manifest_rows(results)
    files = shard_files(folder, rows, rule)
    ids, feats, failed, attrs = [], [], [], {}
    for f in files:
        vids, x, valid, a = read_shard(f)
        attrs = attrs or a
        ids += [v for v, ok in zip(vids, valid) if ok]
        failed += [v for v, ok in zip(vids, valid) if not ok]
        feats.append(x[valid])
    unpooled = np.concatenate(feats) if feats else np.zeros((0, 0, 0), np.float32)
    vectors = pool(unpooled).astype(np.float32)
    return features_of(
        results,
        stream,
        ids,
        vectors,
        unpooled=unpooled,
        split=split,
        failed=failed,
        files=files,
        attrs=attrs,
        where=folder,
        rows=rows,
    )


@reader("clip")
def read_clip(results: Path, stream: str, *, split=None, experiment=None, tag=None) -> Features:
    """The CLIP embeddings of each video's cached frames: ``unpooled`` [N, frames, D] as the
    shards store them (in float32), ``vectors`` the mean of the L2-normalised frames."""
    from moclip.shards import pool_frames

    folder = tag_folder(results, "clip", "clip_embed", experiment, tag, split)
    return _read_shards(results, stream, folder, "clip_embed", split, pool_frames)


@reader("mv")
def read_mv(results: Path, stream: str, *, split=None, experiment=None, tag=None) -> Features:
    """The MV network's features of each video: ``unpooled`` [N, segments, D] at the fixed
    evaluation segments, ``vectors`` their mean (what the fusion head reads). A labelled run
    has a network a split (``split`` required), a folder run one (no split)."""
    from moclip.shards import pool_segments

    folder = tag_folder(results, "mv", "mv_features", experiment, tag, split)
    splits = sorted(p.name for p in folder.glob("split*") if p.is_dir())
    if splits and split is None:
        raise ValueError(
            f"{folder}: a split's network's features ({', '.join(splits)}): pass a split (split=, --split)"
        )
    if split is not None and splits:
        folder = folder / f"split{split}"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: no features of split {split} (rule mv_features; the run's: {', '.join(splits)})"
            )
    return _read_shards(results, stream, folder, "mv_features", split, pool_segments)


@reader("dense_clip", "dense_mv")
def read_dense(results: Path, stream: str, *, split=None, experiment=None, tag=None) -> Features:
    """The dense stage's windows, one row a window in time order within its video:
    ``vectors`` the CLIP embedding of its centre frame as stored (dense_clip) or the MV
    network's feature over its motion (dense_mv), ``times`` its start and end. The stage is
    the run's (experiments cannot vary ``dense:``), so an experiment other than the run has
    none; ``tag`` does not apply (the folder holds one configuration's)."""
    import numpy as np

    from moclip.dense import read_dense as read_file
    from moclip.shards import shard_attrs

    if tag is not None:
        raise ValueError(f"tag={tag!r}: the dense stage's files have no tags (one configuration a run)")
    if experiment is not None and experiment_root(results, experiment) != results:
        raise ValueError(
            f"experiment={experiment!r}: dense features are the run's own (experiments cannot vary dense:)"
        )
    folder = results / "dense"
    if not folder.is_dir() or not any(folder.glob("shard-*.h5")):
        raise FileNotFoundError(
            f"{folder}: no dense features (rule dense: set dense: in the config and run the workflow)"
        )
    rows = manifest_rows(results)
    files = shard_files(folder, rows, "dense")
    key = stream.removeprefix("dense_")
    ids, vectors, times, failed = [], [], [], []
    for f in files:
        shard = read_file(f)
        for v in shard.videos:
            ids += [v.video_id] * len(v.start)
            vectors.append(np.asarray(getattr(v, key), np.float32))
            times.append(np.stack([v.start, v.end], axis=1))
        failed += list(shard.failed)
    width = vectors[0].shape[1] if vectors else 0
    return features_of(
        results,
        stream,
        ids,
        np.concatenate(vectors) if vectors else np.zeros((0, width), np.float32),
        times=np.concatenate(times) if times else np.zeros((0, 2)),
        split=split,
        failed=failed,
        files=files,
        attrs=shard_attrs(files[0]),
        where=folder,
        rows=rows,
    )


# --------------------------------------------------------------------------- export


def _save(path: Path, write) -> None:
    """``write(file)`` into ``path`` atomically (np.save with a name would append .npy)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def export_npy(features: list[Features], out: Path | str, pooled: bool = False) -> list[Path]:
    """video_features' layout: ``<video_id>_<stream>.npy`` a video and stream (whole-video
    streams: ``unpooled`` [K, D], or with ``pooled`` the vector [D]; per-window streams: the
    video's windows [T, D]) and, for per-window streams, ``<video_id>_timestamps_ms.npy``
    [T] (each window's centre, ms, as video_features gives one time a row) and
    ``<video_id>_windows_ms.npy`` [T, 2] (start, end). Streams that share a video's times
    share its time files; different times for one video are an error."""
    import numpy as np

    out = Path(out)
    written, times_of = [], {}
    for f in features:
        rows: dict[str, list[int]] = {}
        for i, v in enumerate(f.ids):
            rows.setdefault(v, []).append(i)
        for v, idx in rows.items():
            if f.times is None:
                arr = f.vectors[idx[0]] if pooled or f.unpooled is None else f.unpooled[idx[0]]
            else:
                arr = f.vectors[idx]
                ms = f.times[idx] * 1000.0
                if v in times_of and not np.array_equal(times_of[v], ms):
                    raise ValueError(
                        f"{v}: stream {f.stream!r} has other window times than another stream: export apart"
                    )
                if v not in times_of:
                    times_of[v] = ms
                    for name, t in (("timestamps_ms", ms.mean(axis=1)), ("windows_ms", ms)):
                        _save(out / f"{v}_{name}.npy", lambda fh, t=t: np.save(fh, t))
                        written.append(out / f"{v}_{name}.npy")
            _save(out / f"{v}_{f.stream}.npy", lambda fh, a=arr: np.save(fh, np.ascontiguousarray(a, np.float32)))
            written.append(out / f"{v}_{f.stream}.npy")
    return written


def export_table(features: list[Features], out: Path | str) -> list[Path]:
    """One table a stream, ``<stream>.npz`` (streams differ in width): a row a video or a
    window, columns ``video_id`` [R], ``start_s`` and ``end_s`` [R] (NaN for whole-video
    features), ``label`` [R] (-1 without labels), ``part`` [R] ('' without a split) and
    ``vector`` float32 [R, D], with ``stream`` and ``classes``; fixed-width strings, so
    ``np.load`` opens it without pickle."""
    import numpy as np

    written = []
    for f in features:
        n = len(f.ids)
        times = f.times if f.times is not None else np.full((n, 2), np.nan)
        columns = {
            "video_id": np.array(f.ids, dtype=str),
            "start_s": np.asarray(times[:, 0], np.float64),
            "end_s": np.asarray(times[:, 1], np.float64),
            "label": f.labels if f.labels is not None else np.full(n, -1, np.int64),
            "part": np.array(f.parts if f.parts is not None else [""] * n, dtype=str),
            "vector": np.asarray(f.vectors, np.float32),
            "stream": np.array(f.stream),
            "classes": np.array(f.classes or [], dtype=str),
        }
        path = Path(out) / f"{f.stream}.npz"
        _save(path, lambda fh, c=columns: np.savez(fh, **c))
        written.append(path)
    return written
