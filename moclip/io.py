"""Files every stage writes: atomic writes, TSV tables, JSON and text.

Every output goes through :func:`atomic_path`, so a killed job never leaves a file that
looks complete.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for the block to create; rename it onto ``path`` only
    if the block succeeds.

    A killed or failing writer leaves a ``.tmp`` file that no reader mistakes for a result.
    The name is unique (process id and a random token) but not created here: the writer
    creates it, so a cache file costs one file creation, not two.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, obj: dict) -> None:
    """``obj`` as indented JSON with a final newline."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path | str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def one_line(text: str) -> str:
    """Text (an error message) as one TSV field: tabs and line breaks become spaces."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def write_tsv(path: Path | str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A tab-separated table with a header line; a field holding a tab or a line break is an
    error naming it (the reader would split it)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        for row in rows:
            fields = [str(v) for v in row]
            for v in fields:
                if any(c in v for c in "\t\r\n"):
                    raise ValueError(f"{path}: {v!r}: tabs and line breaks are not allowed in a TSV field")
            w.writerow(fields)


def read_tsv(path: Path | str) -> list[dict[str, str]]:
    """The rows of a table written by :func:`write_tsv`, as dicts keyed by the header."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def relative_to(path: Path | str, root: Path | str) -> str:
    """``path`` relative to ``root`` (POSIX separators), so a moved run directory still resolves."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def listed_ids(table: Path | str, videos: list[Path | str], root: Path | str) -> list[str]:
    """The ``video_id`` of each of ``videos`` in a table with ``video_id`` and ``path``
    columns (the manifest), matched by the video's path under ``root``: the stages that
    name files by id read the manifest's ids, never derive their own."""
    by_path = {row["path"]: row["video_id"] for row in read_tsv(table)}
    ids = []
    for v in videos:
        rel = relative_to(v, root)
        if rel not in by_path:
            raise ValueError(f"{table}: no row for video {rel}")
        ids.append(by_path[rel])
    return ids
