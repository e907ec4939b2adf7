"""Files every stage writes: atomic writes, TSV tables, JSON and text; and what a failed
read of one says.

Every output goes through :func:`atomic_path`, so a killed job never leaves a file that
looks complete. A file broken outside a job (cut short by a copy, a full disk elsewhere, a
disk error) is another matter: every reader of a project file reads it in :func:`reading`,
so its failure is a :class:`BrokenFileError` that names the file, what is wrong with it and
the command that rebuilds it, in one line.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import pickle
import re
import secrets
import shlex
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

# Snakemake's wildcard syntax (snakemake_interface_storage_plugins.io.WILDCARD_REGEX, copied:
# moclip never imports Snakemake): ``{name}`` or ``{name,constraint}`` anywhere in a path is
# filled in from a job's wildcards, and no escape exists (``{{x}}`` reads as ``{x}`` too).
# Other braces (``{``, ``{}``, ``{a-b}``) and the other characters tried (``[]*?$%;',\``)
# pass through Snakemake's inputs, params and outputs untouched; but the output paths also
# go through ``expand()`` (str.format), where any brace is a field: the results folder may
# hold none.
SNAKEMAKE_WILDCARD = re.compile(r"\{(?=(\s*[.\w]+(\s*,\s*([^{}]+|\{\d+(,\d+)?\})*)?\s*))\1\}")
ANY_BRACE = re.compile(r"\{[^{}]*\}|[{}]")


def wildcard_in(path: str, outputs: bool = False) -> str | None:
    """The first part of ``path`` Snakemake would read as a wildcard (``{name}``; in an
    output path, any brace), or None."""
    m = (ANY_BRACE if outputs else SNAKEMAKE_WILDCARD).search(str(path))
    return m.group(0) if m else None


def braced(what: str, found: str) -> str:
    """The end of the one-line refusal of a path holding a Snakemake wildcard."""
    return (
        f"{what} holds {found}, which Snakemake reads as a wildcard in a path (braces have no escape there): rename it"
    )


class BrokenFileError(Exception):
    """A project file that cannot be read: ``path``, what is wrong (``problem``) and the
    command that rebuilds it (``remedy``), said in one line."""

    def __init__(self, path: Path | str = "", problem: str = "", remedy: str = "", *, message: str | None = None):
        self.path, self.problem, self.remedy = str(path), problem, remedy
        line = f"{path}: {problem}; rebuild it with: {remedy}"
        self.details = message  # the worker's traceback, when a DataLoader worker raised it
        if message is not None:  # that traceback's last line is the worker's exception: ours
            line = message.rstrip().splitlines()[-1].removeprefix(f"{__name__}.{type(self).__qualname__}: ")
        super().__init__(line)

    @property
    def message(self) -> str:
        """The one line. A class attribute named ``message`` also makes torch's DataLoader
        re-raise a worker's error as ``BrokenFileError(message=<its traceback>)``, so it
        reaches the stage as this class, not as a RuntimeError."""
        return str(self)

    def __reduce__(self):  # through a process pool as it was made
        if self.details is not None:
            return functools.partial(type(self), message=self.details), ()
        return type(self), (self.path, self.problem, self.remedy)


# What reading a broken file raises: h5py (OSError; KeyError for a missing dataset or
# attribute), torch.load (RuntimeError, EOFError, UnpicklingError), JSON and TSV (ValueError).
READ_ERRORS = (OSError, EOFError, KeyError, ValueError, RuntimeError, csv.Error, pickle.UnpicklingError)


VENV_SNAKEMAKE = ".venv/bin/snakemake"  # the README's convention: the venv's, from the repository


def snakemake_program(argv0: str | None = None) -> str:
    """The snakemake a user can paste into their shell: ``argv0`` (the running command's, as
    typed), else the one beside this Python (a job's: the venv's), shown relative to the
    shell's directory ($PWD) when it lies under it; else the README's ``.venv/bin/snakemake``."""
    shell = Path(os.environ.get("PWD") or os.getcwd())
    for path in (argv0, Path(sys.executable).parent / "snakemake"):
        if path is None or Path(path).name != "snakemake":
            continue
        path = shell / path  # an absolute path stays itself
        if path.is_file():
            try:
                rel = path.relative_to(shell)
            except ValueError:
                return shlex.quote(str(path))
            return shlex.quote(str(rel) if len(rel.parts) > 1 else f"./{rel}")
    return VENV_SNAKEMAKE


def rebuild(output: Path | str) -> str:
    """The command that rebuilds workflow output ``output`` (a file, or a rule's output
    directory) and what depends on it, the run's other options added."""
    return f"{snakemake_program()} --forcerun {shlex.quote(os.path.normpath(output))}"


def problem(error: BaseException, limit: int = 300) -> str:
    """What a failed read says is wrong with the file, in one line of at most ``limit`` characters."""
    if isinstance(error, FileNotFoundError):
        return "missing"
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    text = one_line(f"{type(error).__name__}: {text}" if text else type(error).__name__)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def reading(path: Path | str, remedy: str | None = None) -> Iterator[None]:
    """Read project file ``path`` in this block: a failure becomes a :class:`BrokenFileError`
    naming it (``..`` resolved), what is wrong and ``remedy`` (default: :func:`rebuild` of it)."""
    try:
        yield
    except BrokenFileError:
        raise
    except READ_ERRORS as e:
        path = os.path.normpath(path)
        raise BrokenFileError(path, problem(e), remedy or rebuild(path)) from e


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
    with reading(path):
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


def whole_lines(path: Path | str) -> list[str]:
    """The lines of a text file this project wrote, line breaks kept; one that does not end
    in a line break was cut short (ValueError)."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.endswith("\n"):
        raise ValueError("cut short: no line break at its end")
    return text.splitlines(keepends=True)


def read_tsv(path: Path | str) -> list[dict[str, str]]:
    """The rows of a table written by :func:`write_tsv`, as dicts keyed by the header."""
    with reading(path):
        return list(csv.DictReader(whole_lines(path), delimiter="\t"))


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


RUN_LOCK = "logs/run.lock"  # in the results folder (beside the logs: it names a process): held by the run writing it
_held: dict[str, object] = {}  # results folder -> its open lock file, for this process's life


class RunLockedError(RuntimeError):
    """Another live run writes the results folder; the message says which, in one line."""


def hold_run_lock(results: Path | str) -> None:
    """An exclusive ``flock`` on ``results``/RUN_LOCK, held until this process ends: the kernel
    drops it with the process, however it ends (kill -9 too), so no lock outlives its run and
    nothing is cleared by hand. Snakemake's own lock is per working directory; this one
    refuses a second run writing the same results folder from anywhere (RunLockedError,
    naming the pid and working directory the holder wrote). Holding it again is a no-op."""
    import fcntl

    folder = Path(results)
    if str(folder.resolve()) in _held:
        return
    (folder / RUN_LOCK).parent.mkdir(parents=True, exist_ok=True)
    f = open(folder / RUN_LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (held open on purpose)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "a process that wrote nothing yet"
        f.close()
        raise RunLockedError(
            f"{folder}: another run is writing this results folder ({holder}): wait for it to end, "
            "or give this run another results folder"
        ) from None
    f.truncate(0)
    f.write(f"pid {os.getpid()}, working directory {os.getcwd()}\n")
    f.flush()
    _held[str(folder.resolve())] = f
