"""The workflow through a real SLURM: a throwaway single-node cluster on this machine.

Needs root (it writes /etc/slurm/slurm.conf and runs the daemons); installs Debian's
slurm-wlm and munge when they are missing, and skips, with the reason, where it cannot.
The demo workflow runs once through ``--workflow-profile profiles/slurm`` (every job an
sbatch submission) and once locally; the outputs must be identical.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REPO, TINY_CONFIG, merged, snakemake

import moclip.video.cache  # noqa: F401  registers the HDF5 filters the MV caches are written with

pytestmark = pytest.mark.workflow
# The workflow tests' tiny run with shorter training; the default target (the whole workflow).
# torch's threads a job are 1 (cpu_threads): the local run (two 1-thread jobs at once) and the
# SLURM jobs beside it share 2 cores, and oversubscribed torch threads slow every job many-fold.
ONE_THREAD = {"cpu_threads": 1}
SLURM_CONFIG = merged(
    TINY_CONFIG,
    {
        "clip": ONE_THREAD,
        "mvnet": {"epochs": 3, "milestones": [2], **ONE_THREAD},
        "heads": {"epochs": 20, "seeds": [0], **ONE_THREAD},
    },
)
# Two experiments: every cluster job parses the run again and must find the same roots.
EXPERIMENTS = {"base": {}, "slower-heads": {"heads": {"lr": 0.0005}}}
SLURM_CONFIG["experiments"] = EXPERIMENTS
LOCAL_RULES = {"all", "cache_failures"}  # cheap rules the Snakefile keeps on the submit host
TEMPLATE = Path(__file__).parent / "slurm" / "slurm.conf.in"
SLURM_CONF = Path("/etc/slurm/slurm.conf")  # srun in the job step finds it only here
PARTITION = "debug"
SBIN = Path("/usr/sbin")
MUNGE_KEY = Path("/etc/munge/munge.key")
STARTUP_TIMEOUT = 60  # s until sinfo shows the node idle
RUN_TIMEOUT = 600  # s a snakemake run


def _running(name: str) -> list[int]:
    """PIDs of processes whose command name is ``name``."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == name:
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"({e})"


def _install_slurm() -> None:
    missing = [b for b in ("slurmctld", "slurmd", "munged") if not (SBIN / b).exists()]
    clients = ("sinfo", "squeue", "sbatch", "srun", "scancel", "munge", "unmunge")
    missing += [b for b in clients if shutil.which(b) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "slurm-wlm", "munge"],
        ):
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            if out.returncode != 0:
                pytest.skip(
                    f"SLURM missing ({', '.join(missing)}) and `{' '.join(cmd)}` failed:\n"
                    f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
                )
    except subprocess.TimeoutExpired:
        pytest.skip("SLURM missing and apt-get did not finish in 10 minutes")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Cluster:
    """The daemons this test started, their logs, and the slurm.conf to restore."""

    def __init__(self, state: Path):
        self.state = state
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.conf_backup: Path | None = None
        self.conf_written = False

    def logs(self) -> str:
        parts = [f"--- {name} ---\n{_tail(self.state / f'{name}.log')}" for name in ("slurmctld", "slurmd")]
        parts += [f"--- {name} stdout/stderr ---\n{_tail(self.state / f'{name}.out', 20)}" for name, _ in self.procs]
        return "\n".join(parts)

    def start(self, name: str, cmd: list[str], **kw) -> subprocess.Popen:
        with open(self.state / f"{name}.out", "wb") as out:  # the child keeps its own handle
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.logs()}")

    def stop(self) -> None:
        try:
            if any(name == "slurmctld" and p.poll() is None for name, p in self.procs):
                # Cancel whatever a failed run left queued or running, before the daemons go.
                ids = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
                if ids.stdout.split():
                    subprocess.run(["scancel", *ids.stdout.split()], capture_output=True, timeout=30)
                    time.sleep(2)
        except (OSError, subprocess.TimeoutExpired):
            pass  # the daemons go anyway
        finally:
            for _, proc in reversed(self.procs):  # slurmd, slurmctld, munged
                _stop(proc)
            if self.conf_backup is not None:
                shutil.copy2(self.conf_backup, SLURM_CONF)
            elif self.conf_written:
                SLURM_CONF.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM (slurmctld, slurmd, munged) on 127.0.0.1, stopped afterwards."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("a local SLURM needs root on Linux (writes /etc/slurm/slurm.conf, runs slurmd)")
    for daemon in ("slurmctld", "slurmd"):
        if _running(daemon):
            pytest.skip(f"a {daemon} is already running on this machine; not replacing its slurm.conf")
    _install_slurm()

    state = Path(tmp_path_factory.mktemp("slurm"))
    state.chmod(0o755)
    (state / "ctld").mkdir()
    (state / "d").mkdir()
    cluster = Cluster(state)
    try:
        if not _running("munged"):
            if not MUNGE_KEY.exists():
                MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
                if (SBIN / "mungekey").exists():
                    subprocess.run([str(SBIN / "mungekey"), "--create", "--keyfile", str(MUNGE_KEY)], check=True)
                else:
                    subprocess.run(["create-munge-key", "-f"], check=True)
                shutil.chown(MUNGE_KEY, "munge", "munge")
                MUNGE_KEY.chmod(0o400)
            subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"], check=True)
            cluster.start(
                "munged", [str(SBIN / "munged"), "--foreground"], user="munge", group="munge", extra_groups=[]
            )
        deadline = time.monotonic() + 20
        while True:  # a credential round trip, not the socket file (a stale one may be left)
            cluster.check_alive()
            enc = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
            if (
                enc.returncode == 0
                and subprocess.run(["unmunge"], input=enc.stdout, capture_output=True, timeout=10).returncode == 0
            ):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"munge does not answer: {enc.stderr.decode(errors='replace')}\n{cluster.logs()}")
            time.sleep(0.2)

        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_available = next(int(line.split()[1]) // 1024 for line in meminfo if line.startswith("MemAvailable:"))
        fields = {
            "STATE": str(state),
            "CTLD_PORT": str(_free_port()),
            "SLURMD_PORT": str(_free_port()),
            "CPUS": str(os.cpu_count()),
            # Jobs ask up to 6 GB (clip_embed); memory is neither consumed nor enforced here.
            "MEMORY_MB": str(max(mem_available - 1024, 8192)),
            "PARTITION": PARTITION,
        }
        conf = TEMPLATE.read_text()
        for key, value in fields.items():
            conf = conf.replace(f"@{key}@", value)
        unfilled = re.findall(r"^[^#\n]*@[A-Z_]+@.*$", conf, re.M)
        assert not unfilled, f"{TEMPLATE}: fields left unfilled: {unfilled}"
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if SLURM_CONF.exists():
            cluster.conf_backup = state / "slurm.conf.orig"
            shutil.copy2(SLURM_CONF, cluster.conf_backup)
        cluster.conf_written = True
        SLURM_CONF.write_text(conf)

        cluster.start("slurmctld", [str(SBIN / "slurmctld"), "-D", "-i"])
        cluster.start("slurmd", [str(SBIN / "slurmd"), "-D", "-N", "localhost"])
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            cluster.check_alive()
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=30)
            if out.stdout.strip() == "idle":
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node not idle after {STARTUP_TIMEOUT} s: sinfo says "
                    f"{out.stdout.strip()!r} {out.stderr.strip()!r}\n{cluster.logs()}"
                )
            time.sleep(0.5)
        yield cluster
    finally:
        cluster.stop()


def run_snakemake(workdir: Path, *args: str, cluster: Cluster | None = None) -> subprocess.CompletedProcess:
    """The shared runner, with the cluster's and the jobs' logs in the message when it fails."""
    try:
        out = snakemake(workdir, SLURM_CONFIG, *args, cores=None, check=False, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"snakemake did not finish in {RUN_TIMEOUT} s\n{e.stdout}\n{e.stderr}\n"
            + (cluster.logs() if cluster else "")
        ) from None
    if out.returncode != 0:
        slurm_logs = "\n".join(
            f"--- {p} ---\n{_tail(p, 40)}" for p in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
        )
        raise AssertionError(
            f"snakemake failed ({out.returncode}): {' '.join(out.args)}\n{out.stdout}\n{out.stderr}\n"
            + slurm_logs
            + "\n"
            + (cluster.logs() if cluster else "")
        )
    return out


def _h5_contents(path: Path) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Every dataset's array, and every object's attributes (the file's under "/")."""
    datasets, attrs = {}, {}
    with h5py.File(path) as f:
        attrs["/"] = dict(f.attrs)

        def visit(name, obj):
            attrs[name] = dict(obj.attrs)
            if isinstance(obj, h5py.Dataset):
                datasets[name] = obj[()]

        f.visititems(visit)
    return datasets, attrs


def test_slurm_run_matches_local_run(slurm_cluster, tmp_path):
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    on_slurm.mkdir()
    local.mkdir()
    # The local reference run goes on beside the SLURM one, which mostly waits on squeue polls.
    with ThreadPoolExecutor(1) as pool:
        # One thread a job on both sides (the torch threads are the config's: identical weights).
        local_run = pool.submit(run_snakemake, local, "--cores", "2", "--max-threads", "1")
        t0 = time.monotonic()
        out = run_snakemake(
            on_slurm,
            "--workflow-profile",
            str(REPO / "profiles" / "slurm"),
            "--jobs",
            "4",
            "--max-threads",
            "1",  # the profile's 8 would not fit a small node; 1: jobs side by side
            "--latency-wait",
            "5",
            # No accounting daemon: sacct knows nothing, squeue does (MinJobAge=600 >= 3 x 2 s).
            # The plugin's status interval is this after a round that saw a job end, 10 s
            # longer after each round that saw none (snakemake_executor_plugin_slurm): a
            # short one lets each stage's few-second jobs be seen done sooner.
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--slurm-no-account",  # no accounts here (the plugin would ask sacct for one)
            "--default-resources",
            f"slurm_partition={PARTITION}",
            # device auto on a cluster plans the GPU jobs (one clip_embed job for every shard);
            # this node has no card, so they ask for none and run on its CPU
            "--set-resources",
            "clip_embed:gpu=0",
            "train_mvnet:gpu=0",
            "mv_features:gpu=0",
            cluster=slurm_cluster,
        )
        slurm_seconds = time.monotonic() - t0
        local_run.result()

    # Every job went through sbatch; none ran on the submit host.
    log = out.stdout + out.stderr
    jobs = re.findall(r"^(local)?(?:rule|checkpoint) (\w+):$", log, re.M)
    submitted = log.count("has been submitted with SLURM jobid")
    on_host = {rule for local_job, rule in jobs if local_job}
    assert "SLURM run ID" in log and on_host <= LOCAL_RULES, log
    n_remote = sum(not local_job for local_job, _ in jobs)
    assert submitted == n_remote >= 20, f"{submitted} sbatch submissions for {n_remote} remote jobs\n{log}"
    print(f"SLURM run: {submitted} jobs, {slurm_seconds:.0f} s")

    a, b = on_slurm / "results", local / "results"
    assert (a / "manifest.tsv").read_bytes() == (b / "manifest.tsv").read_bytes()
    assert (a / "cache" / "failures.tsv").read_bytes() == (b / "cache" / "failures.tsv").read_bytes()
    index_a = sorted(p.relative_to(a) for p in (a / "cache" / "index").glob("*.tsv"))
    assert index_a == sorted(p.relative_to(b) for p in (b / "cache" / "index").glob("*.tsv"))
    assert len(index_a) == SLURM_CONFIG["dataset"]["shards"]
    for rel in index_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel

    h5_a = sorted(p.relative_to(a) for p in a.rglob("*.h5"))
    assert h5_a == sorted(p.relative_to(b) for p in b.rglob("*.h5"))
    n_videos = len((a / "manifest.tsv").read_text().splitlines()) - 1
    assert sum(rel.parts[0] == "cache" for rel in h5_a) == 2 * n_videos
    assert sum(rel.parts[0] == "embeddings" for rel in h5_a) == 4 * SLURM_CONFIG["dataset"]["shards"]  # CLIP, MV x3
    for rel in h5_a:
        (da, attrs_a), (db, attrs_b) = _h5_contents(a / rel), _h5_contents(b / rel)
        assert sorted(da) == sorted(db), rel
        for name in da:
            assert da[name].dtype == db[name].dtype and da[name].shape == db[name].shape, (rel, name)
            assert np.array_equal(da[name], db[name]), (rel, name)
        assert attrs_a.keys() == attrs_b.keys(), rel
        for name in attrs_a:
            assert attrs_a[name].keys() == attrs_b[name].keys(), (rel, name)
            for key, value in attrs_a[name].items():
                assert np.array_equal(value, attrs_b[name][key]), (rel, name, key, value, attrs_b[name][key])
    comparisons = [json.loads((r / "experiments.json").read_text()) for r in (a, b)]
    roots = comparisons[0]["roots"]  # base: the run itself, at the top level
    assert roots == comparisons[1]["roots"] == {"base": ".", "slower-heads": "experiments/slower-heads"}
    for name in EXPERIMENTS:  # each experiment's reports: every method's numbers identical
        for k in (1, 2, 3):
            ra, rb = (
                json.loads((r / roots[name] / "reports" / f"split{k}" / "metrics.json").read_text()) for r in (a, b)
            )
            assert ra["methods"] == rb["methods"] and set(ra["methods"]) == {"mv_only", "clip_linear", "fusion"}
    assert comparisons[0]["experiments"] == list(EXPERIMENTS) and comparisons[0]["rows"] == comparisons[1]["rows"]
