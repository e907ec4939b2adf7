"""Shared test helpers: synthetic videos with known motion, tiny demo datasets, and the
``snakemake`` command line (moclip.workflow.runner, the runner the benchmarks use too) with the
finished tiny run the workflow tests share."""

from __future__ import annotations

import os

# Two workers, each running jobs on 2 cores, share this machine's cores by design: OpenMP
# threads that spin while they wait take a core from the other worker (the Snakefile sets the
# same for its jobs). Set before torch loads its OpenMP runtime, which reads it once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from filelock import FileLock

from moclip.dataset.demo import DemoSpec, make_demo_dataset, smooth_noise
from moclip.mv.data import MVItem
from moclip.video.cache import COMPRESSION
from moclip.video.encode import encode_video
from moclip.workflow import runner
from moclip.workflow.config import merge_config as merged  # noqa: F401 (the tests merge configs as Snakemake does)

REPO = Path(__file__).resolve().parents[1]
# The tiny demo run most workflow tests share (config/test.yaml, merged over config.yaml).
DEFAULTS = yaml.safe_load((REPO / "config.yaml").read_text())  # the defaults, as the workflow reads them
TINY_CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
TINY_DEMO = DemoSpec(**TINY_CONFIG["demo"])


def moving_object_video(
    path: Path,
    vx: int,
    vy: int,
    codec: str = "mpeg4",
    bframes: int = 0,
    n: int = 24,
    size: int = 64,
    seed: int = 0,
    frame: tuple[int, int] = (320, 240),
    **encode,
) -> list[tuple[int, int]]:
    """Encode a smooth textured square moving (vx, vy) px a frame over a static textured
    background of ``frame`` (width, height) px; return its top-left corner per frame.
    ``encode``: more arguments of :func:`moclip.video.encode.encode_video` (gop, pix_fmt)."""
    rng = np.random.default_rng(seed)
    width, height = frame
    bg = (smooth_noise(rng, height, width, 16) * 80 + 60).astype(np.uint8)
    tex = (smooth_noise(rng, size, size, 8) * 255).astype(np.uint8)
    x0 = width // 2 - size // 2 - vx * (n - 1) // 2
    y0 = height // 2 - size // 2 - vy * (n - 1) // 2
    pos = [(x0 + vx * i, y0 + vy * i) for i in range(n)]

    def frames():
        for x, y in pos:
            img = bg.copy()
            img[y : y + size, x : x + size] = tex
            yield img

    opts = {"refs": "1"} if codec == "libx264" else None
    encode_video(path, frames(), codec=codec, bframes=bframes, bit_rate=2_000_000, options=opts, **encode)
    return pos


def flip_byte(path, dataset: str, at: float = 0.5) -> None:
    """One byte of ``dataset``'s first stored chunk flipped in the file on disk, as a bad disk
    or a copy cut short does it (through h5py, the checksum would be rewritten too)."""
    with h5py.File(path, "r") as f:
        chunk = f[dataset].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(chunk.byte_offset + int(chunk.size * at))
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0x10]))


# How make test's pytest-xdist workers share the suite (--dist loadfile, scheduled by the hook
# below): a file goes to one worker, so that its module fixtures are built once, except the
# files in SPREAD (none with a module fixture), whose tests go out one by one; files in
# LONGEST_FIRST (make test's --durations) are handed out first, so that no long one is left
# to run alone at the end. Order and grouping only: every file runs, listed or not.
SPREAD = ("test_workflow.py",)
LONGEST_FIRST = (  # the files of one or two long tests first; SPREAD's tests then fill the gaps
    "test_slurm.py",
    "test_readme.py",
    "test_workflow_presets.py",
    "test_gpu_check.py",
    "test_workflow_experiments.py",
    "test_verify.py",
    "test_workflow_code.py",
    "test_workflow.py",
    "test_clip_stream.py",
    "test_dense.py",
    "test_mv_train.py",
    "test_html_report.py",
    "test_mv_stream.py",
)


def pytest_collection_modifyitems(items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order kept
    for item in items:
        if item.path.name in SPREAD:
            shared = [f for f, d in item._fixtureinfo.name2fixturedefs.items() if d and d[-1].scope == "module"]
            assert not shared, f"{item.nodeid}: module fixture {shared} in a SPREAD file (built once a worker)"


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, less SPREAD's files (xdist's loadgroup marks do not reach pytest 9's node ids)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Spread(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return nodeid if file.rpartition("/")[2] in SPREAD else file

    return Spread(config, log)


def once(tmp_path_factory, name: str, build) -> Path:
    """The folder ``name``, filled by ``build(folder)`` once a test session however many
    pytest-xdist workers share it: the first to ask builds it under a file lock in the
    workers' common temp dir, the others wait and read it. A failed build fails every test
    that asks, with the first error, and is not tried again."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        path = tmp_path_factory.mktemp(name, numbered=False)
        build(path)
        return path
    path = tmp_path_factory.getbasetemp().parent / name  # the run's temp dir, above each worker's
    done, failed = path.with_name(name + ".done"), path.with_name(name + ".failed")
    with FileLock(path.with_name(name + ".lock")):
        if not done.exists() and not failed.exists():
            path.mkdir()
            try:
                build(path)
            except BaseException as e:
                failed.write_text(f"{type(e).__name__}: {e}")
                raise
            done.touch()
    if failed.exists():
        pytest.fail(f"{name}, built by another worker, failed: {failed.read_text()}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> tuple[Path, Path]:
    """A small demo dataset (9 classes x 5 groups x 1 clip), built once a session."""
    build = lambda root: make_demo_dataset(root / "UCF-101", root / "ucfTrainTestlist", TINY_DEMO, threads=2)
    root = once(tmp_path_factory, "demo", build)
    return root / "UCF-101", root / "ucfTrainTestlist"


# --------------------------------------------------------------------------- the library as the workflow runs it

# Runs each script's import statements (not the script) in one fresh interpreter, and the
# library's imports inside functions as if each ran, and reports which moclip modules each
# one loaded: third-party modules stay loaded between scripts, moclip's are dropped, so each
# script's set is its own.
_IMPORTS_ORACLE = """
import ast, json, sys
out = {}
for path in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "moclip" or m.startswith("moclip.")]:
        del sys.modules[name]
    tree = ast.parse(open(path).read())
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(imports, []), path, "exec"), {})
    done = set()
    while todo := [m for m in sys.modules if m.startswith("moclip.") and m not in done]:
        for name in todo:  # and the library's imports inside functions, taken as if each function ran
            done.add(name)
            source = sys.modules[name].__file__
            for node in ast.walk(ast.parse(open(source).read())):
                if isinstance(node, ast.Import) and any(a.name.startswith("moclip") for a in node.names) or (
                    isinstance(node, ast.ImportFrom) and str(node.module).startswith("moclip")
                ):
                    exec(compile(ast.Module([node], []), source, "exec"), {})
    out[path] = sorted(m for m in sys.modules if m.startswith("moclip."))
print(json.dumps(out))
"""


def library_modules() -> list[str]:
    """Every module of the ``moclip`` package, dotted (``moclip.x.y``; a subpackage by its
    ``__init__``), the top-level package itself left out."""
    names = set()
    for p in (REPO / "moclip").rglob("*.py"):
        parts = p.relative_to(REPO).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names - {"moclip"})


def imported_modules(scripts: list[Path]) -> dict[str, list[str]]:
    """Script stem -> the moclip modules Python loads when it runs the script's imports: an
    account of what a rule runs that does not go through moclip.workflow.provenance."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTS_ORACLE, *map(str, scripts)], capture_output=True, text=True, check=True
    )
    return {Path(k).stem: v for k, v in json.loads(out.stdout).items()}


# --------------------------------------------------------------------------- the workflow

SNAKEMAKE = runner.SNAKEMAKE
CONFIG_NAME = "test-config.yaml"  # the tests' config file in a run's directory

# Snakemake's command line with one bug mended: `--list-changes params` (9.27) lists every
# output that has a params record, changed or not, because an empty ParamsChange still
# iterates over its files. The decision to rerun is not affected; only this listing is.
LIST_PARAMS_CHANGES = [
    sys.executable,
    "-c",
    "import sys; from snakemake.persistence import ParamsChange; "
    "ParamsChange.__iter__ = lambda self: iter(self.files if self else ()); "
    "from snakemake.cli import main; sys.exit(main())",
]


def differences(a: dict, b: dict, prefix: str = "") -> dict[str, object]:
    """Dotted keys whose values differ between two merged configs, with a's value."""
    out = {}
    for k in a:
        key = f"{prefix}{k}"
        if isinstance(a[k], dict) and a[k]:
            out |= differences(a[k], b[k], key + ".")
        elif a[k] != b[k]:
            out[key] = a[k]
    return out


def dotted(config: dict, key: str):
    """A config's value at a dotted key (``heads.lr``)."""
    for k in key.split("."):
        config = config[k]
    return config


def job_counts(out: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (a dry run's, or a run's first): jobs a rule; none
    when there is nothing to do."""
    lines = out.splitlines()
    jobs: dict[str, int] = {}
    for line in lines[lines.index("Job stats:") + 3 if "Job stats:" in lines else len(lines) :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break  # the table ends at its total (a run goes on with "jobid: 0" and the like)
        jobs[parts[0]] = int(parts[1])
    return jobs


# Run folders that several workers' tests read at once (the finished run).
SHARED_RUNS: set[Path] = set()


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """The ``snakemake`` command line as a user runs it (:func:`moclip.workflow.runner.run`):
    ``config`` written to ``workdir/test-config.yaml`` and passed with --configfile (merged
    over config.yaml); a failed run fails the test with its output. ``kw``: the runner's
    (``cores``, ``snakefile``, ``env``, ``timeout``, ``program``, e.g. ``LIST_PARAMS_CHANGES``)."""
    shared = Path(workdir) in SHARED_RUNS  # its config file is rewritten by each call: one call at a time
    try:
        with FileLock(f"{workdir}.lock") if shared else contextlib.nullcontext():
            return runner.run(workdir, config, *args, check=check, config_name=CONFIG_NAME, **kw)
    except runner.SnakemakeFailed as e:
        raise AssertionError(str(e)) from None


def planned(workdir: Path, config: dict, *targets: str, **kw) -> dict[str, int]:
    """Jobs a dry run would execute, by rule."""
    out = snakemake(workdir, config, *targets, "-n", "--quiet", "rules", **kw)  # --quiet takes a list
    return job_counts(out.stdout)


# Files whose bytes hold times or logs, not results: left out where runs are compared byte for byte.
TIMED = re.compile(r"^results/(logs|benchmarks)/|^results/mvnet/.*/training\.json$")


def result_files(workdir: Path) -> dict[str, bytes]:
    """Every result file of a run (relative path -> bytes), less logs and timings."""
    out = {}
    for p in sorted((workdir / "results").rglob("*")):
        rel = p.relative_to(workdir).as_posix()
        if p.is_file() and not TIMED.search(rel):
            out[rel] = p.read_bytes()
    return out


RUN_TMP = "tmp"  # finished_run's $TMPDIR, in its folder


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """The tiny demo run to the end, once a session. Read it, never change it: a test that
    runs the workflow again in it takes ``demo_run`` (its own copy) instead."""

    def build(wd: Path) -> None:
        (wd / RUN_TMP).mkdir(parents=True)  # the run's $TMPDIR, to see what it leaves there
        env = {"MOCLIP_PROGRESS_EVERY": "1", "TMPDIR": str(wd / RUN_TMP)}  # the jobs' progress every second
        out = snakemake(wd, TINY_CONFIG, env=env)
        (wd / "console.txt").write_text(out.stdout + out.stderr)  # what the user saw

    wd = once(tmp_path_factory, "wf demo ü", build)  # spaces and unicode in the path
    SHARED_RUNS.add(wd)
    return wd


@pytest.fixture
def demo_run(finished_run, tmp_path) -> Path:
    """A copy of the finished run (outputs, times and Snakemake's records) for one test to change."""
    wd = tmp_path / "run copy"
    with FileLock(f"{finished_run}.lock"):  # not while another worker's call rewrites its config
        shutil.copytree(finished_run, wd, symlinks=True)
    return wd


# --------------------------------------------------------------------------- real weights, offline

# The hub files the presets' pretrained tags load (moclip.workflow.checks.weight_files): OpenAI's
# ViT-B-32 through open_clip, EfficientNet-B0's ImageNet weights through timm.
PRESET_WEIGHTS = (
    ("timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors"),
    ("timm/efficientnet_b0.ra_in1k", "model.safetensors"),
)


def put_hub_file(cache: Path, repo: str, filename: str, state: dict | None = None) -> Path:
    """One file of a Hugging Face hub repository, laid out as the hub's cache holds it: a
    state dict as safetensors, or an empty file where only its presence is read."""
    root = cache / ("models--" + repo.strip("/").replace("/", "--"))
    snap = root / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text("0" * 40)
    if state is None:
        (snap / filename).write_bytes(b"")
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, snap / filename)
    return snap / filename


@pytest.fixture(scope="session")
def hub_stub(tmp_path_factory) -> dict[str, str]:
    """An offline Hugging Face cache holding (empty) the files the presets' tags name: enough
    for the parse-time check that they are here (dry runs load no weights)."""
    build = lambda cache: [put_hub_file(cache, repo, filename) for repo, filename in PRESET_WEIGHTS]
    cache = once(tmp_path_factory, "hub-stub", build)
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


# --------------------------------------------------------------------------- MV caches and weights
P, B, I = ord("P"), ord("B"), ord("I")  # frame types as the caches store them


def write_mv_cache(path, mv: np.ndarray, frame_type: np.ndarray, ref_distance: np.ndarray) -> Path:
    """An MV cache file as moclip.video.cache writes them (chunked, LZ4), from arrays."""
    with h5py.File(path, "w") as f:
        f.create_dataset("mv", data=mv, chunks=(min(64, len(mv)), *mv.shape[1:]), **COMPRESSION["lz4"])
        f.create_dataset("frame_type", data=frame_type)
        f.create_dataset("ref_distance", data=ref_distance)
        f.attrs.update(status="ok", mv_cell=8, height=mv.shape[1] * 8, width=mv.shape[2] * 8)
    return Path(path)


def synthetic_videos(root: Path, n_per_class: int, seed: int, t: int = 24) -> list[MVItem]:
    """Motion-only classes: a blob rising, falling, or shaking sideways, at random places."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for label, motion in enumerate([(0, -3), (0, 3), "shake"]):
        for i in range(n_per_class):
            mv = rng.normal(0, 0.3, (t, 12, 16, 2)).astype(np.float16)
            y, x = rng.integers(2, 8), rng.integers(2, 12)
            for f in range(t):
                d = (3 * (-1) ** (f // 4), 0) if motion == "shake" else motion
                mv[f, y : y + 3, x : x + 3] = d
            ft = np.full(t, P, np.uint8)
            ft[0] = I
            mv[0] = 0
            vid = f"v{label}_{i}"
            out.append(MVItem(vid, write_mv_cache(root / f"{vid}.h5", mv, ft, np.ones(t, np.int16)), label))
    return out


def random_gops(rng, n_gops: int, gop: int, h: int, w: int, cell: int, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Dense half-pixel motion (a camera pan plus per-block noise, strong enough to leave
    the frame) over ``n_gops`` GOPs of ``gop`` frames, with a B-frame and a static P-frame."""
    hc, wc = -(-h // cell), -(-w // cell)
    t = n_gops * gop
    base = rng.normal(0, sd, (t, 1, 1, 2)) + rng.normal(0, sd, (t, hc, wc, 2))
    mv = (np.round(base * 2) / 2).astype(np.float16)
    ft = np.frombuffer((("I" + "P" * (gop - 1)) * n_gops).encode(), np.uint8).copy()
    ft[min(3, t - 1)] = B if ft[min(3, t - 1)] == P else ft[min(3, t - 1)]
    mv[min(5, t - 1)] = 0
    return mv, ft


def gop_videos(tmp_path, sizes: list[tuple[int, int]], lengths: list[int]) -> list[MVItem]:
    """MV caches of dense motion over GOPs of 12 (a B-frame, a static P-frame, traces leaving
    the frame), frames of ``sizes`` (not whole cells), ``lengths`` frames long."""
    items = []
    tmp_path.mkdir(parents=True, exist_ok=True)
    for k, ((h, w), n) in enumerate(zip(sizes, lengths, strict=True)):
        mv, ft = random_gops(np.random.default_rng(k), -(-n // 12), 12, h, w, 8, 4.0)
        path = write_mv_cache(tmp_path / f"v{k}.h5", mv[:n], ft[:n], np.ones(n, np.int16))
        with h5py.File(path, "r+") as f:
            f.attrs.update(height=h, width=w)
        items.append(MVItem(f"v{k}", path, k % 3))
    return items


@pytest.fixture(scope="module")
def rgb_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    """A local 3-channel efficientnet_b0 checkpoint (random weights, as a user's ImageNet file
    would be laid out: the classifier included) and its state dict."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("efficientnet_b0", pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "efficientnet_b0.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()
