"""Scale benchmark: the whole workflow on UCF101-shaped synthetic sets a decade apart.

For each size, a UCF101-shaped dataset (``moclip.dataset.demo.make_scale_dataset``: 101 classes at
13,320 videos, 25 groups, 4-7 clips a group, UCF101's clip lengths, 320x240 MPEG-4 Part 2)
is generated, then ``snakemake --cores N`` runs every stage to the summary with small
models (the cost a sample is what matters, not accuracy). Snakemake's ``benchmark:`` files
give each job's wall time, CPU time and peak memory; ``snakemake --summary`` maps every
output to its rule for the files and bytes written. Printed: a table a stage and size, the
growth exponent between the sizes (1 = linear in the videos, 0 = flat), memory's ratio
(goal: train_mvnet and the other per-split jobs within 1.2x, under 3 GB), a projection for
Kinetics-400, and the check that every video is in every stage's output or in failures.tsv.

Usage: python benchmarks/bench_scale.py [--sizes 1332 13320] [--cores 2] [--root DIR] [--keep] [--encoding raw]
                                        [--json scale.json] [--plot scale.png]
       python benchmarks/bench_scale.py --from-json scale.json [--plot scale.png]   # re-print a saved run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

from moclip.dataset.demo import make_scale_dataset
from moclip.dataset.videos import read_manifest
from moclip.io import read_tsv
from moclip.shards import read_shard
from moclip.video.cache import read_index
from moclip.workflow import runner

REPO = Path(__file__).resolve().parents[1]
CONFIG = {  # merged over config.yaml: the default pipeline, short training
    "mvnet": {"epochs": 1, "milestones": [1]},
    "heads": {"epochs": 5, "seeds": [0]},
}
STAGES = [  # rules in pipeline order
    "manifest",
    "cache_shard",
    "cache_failures",
    "clip_embed",
    "zeroshot",
    "train_mvnet",
    "mv_features",
    "train_head",
    "report_split",
    "summary",
]
KINETICS = {"videos": 240_000, "frames": 250}  # Kinetics-400 train+val: 10 s clips at 25 fps


def _tree_size(path: Path) -> tuple[int, int]:
    if path.is_file():
        return 1, path.stat().st_size
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def stage_costs(workdir: Path) -> dict[str, dict]:
    """Per rule: jobs, summed job wall and CPU seconds, the largest job's peak RSS and PSS
    (MB), and the files and bytes of its outputs."""
    out = runner.run(workdir, workdir / "scale-config.yaml", "--summary", cores=None)
    lines = [ln.split("\t") for ln in out.stdout.splitlines() if "\t" in ln]
    head = lines[0]
    costs: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    seen_logs = set()
    outputs: dict[str, list[str]] = defaultdict(list)
    for row in lines[1:]:
        r = dict(zip(head, row))
        rule = r["rule"]
        outputs[rule].append(r["output_file"])
        files, size = _tree_size(workdir / r["output_file"])
        costs[rule]["files"] += files
        costs[rule]["bytes"] += size
        if r["output_file"].startswith("results/cache/frames/"):  # the frame caches apart (frames.encoding)
            costs[rule]["frame_bytes"] += size
        for log in r["log-file(s)"].split(","):
            if log and log not in seen_logs:
                seen_logs.add(log)
                bench = workdir / log.replace("results/logs/", "results/benchmarks/", 1).removesuffix(".log")
                b = read_tsv(f"{bench}.tsv")[0]
                c = costs[rule]
                c["jobs"] += 1
                c["wall_s"] += float(b["s"])
                c["cpu_s"] += float(b["cpu_time"])
                c["rss_mb"] = max(c["rss_mb"], float(b["max_rss"]))
                c["pss_mb"] = max(c["pss_mb"], float(b["max_pss"]))
    result = {rule: dict(c) for rule, c in costs.items()}
    for rule in result:
        result[rule]["outputs"] = outputs[rule]
    return result


def check_counts(workdir: Path, costs: dict, n_videos: int) -> dict[str, int]:
    """Every video in the manifest, and in every per-video stage's output or in failures.tsv;
    every split's test videos in its predictions. Raises AssertionError naming the gap."""
    rows = read_manifest(workdir / "results/manifest.tsv")
    ids = {r.video_id for r in rows}
    assert len(rows) == len(ids) == n_videos, f"manifest: {len(rows)} rows for {n_videos} videos"
    failed = {r.video_id for r in read_index(workdir / "results/cache/failures.tsv")}
    index = [r for p in costs["cache_shard"]["outputs"] if p.endswith(".tsv") for r in read_index(workdir / p)]
    assert {r.video_id for r in index} == ids, "cache indexes do not cover the manifest"
    for rule in ("clip_embed", "mv_features"):
        valid, n_rows = set(), 0
        for p in costs[rule]["outputs"]:
            got, _, mask, _ = read_shard(workdir / p)
            valid |= {v for v, ok in zip(got, mask) if ok}
            n_rows += len(got)
        by_split = 1 if rule == "clip_embed" else len({p.split("/split")[1][0] for p in costs[rule]["outputs"]})
        assert valid | failed == ids and not valid & failed, f"{rule}: videos neither embedded nor failed"
        assert n_rows == by_split * n_videos, f"{rule}: {n_rows} rows for {by_split} x {n_videos} videos"
    tested = 0
    for p in costs["train_head"]["outputs"]:
        if p.endswith("predictions.tsv") and "/fusion/" in p:
            split = int(p.split("/split")[1][0])
            n_test = sum(r.split(split) == "test" for r in rows)
            assert len(read_tsv(workdir / p)) == n_test, f"{p}: not every test video predicted"
            tested += n_test
    return {"videos": n_videos, "failed": len(failed), "tested_fusion": tested}


def run_size(n: int, root: Path, cores: int, encoding: str | None = None) -> dict:
    data = root / f"ucf101-shaped-{n}"
    t = time.perf_counter()
    info = make_scale_dataset(data / "UCF-101", data / "ucfTrainTestlist", n, threads=cores)
    info["generate_s"] = time.perf_counter() - t
    run = data / "run"
    run.mkdir(exist_ok=True)
    config = {**CONFIG, "dataset": {"videos": str(data / "UCF-101"), "lists": str(data / "ucfTrainTestlist")}}
    if encoding:
        config["frames"] = {"encoding": encoding}
    info["encoding"] = encoding or yaml.safe_load((REPO / "config.yaml").read_text())["frames"]["encoding"]
    (run / "scale-config.yaml").write_text(yaml.safe_dump(config))
    t = time.perf_counter()
    done = runner.run(run, run / "scale-config.yaml", cores=cores, check=False)
    if done.returncode:
        raise SystemExit(f"snakemake failed at {n} videos:\n{done.stderr[-4000:]}")
    info["workflow_s"] = time.perf_counter() - t
    info["stages"] = stage_costs(run)
    info["counts"] = check_counts(run, info["stages"], n)
    for c in info["stages"].values():
        del c["outputs"]
    return info


def exponent(a: float, b: float, na: int, nb: int) -> float:
    return math.log(b / a) / math.log(nb / na) if a > 0 and b > 0 and na != nb else float("nan")


def table(runs: dict[int, dict]) -> str:
    """Markdown: a row a stage; jobs, summed job wall time and CPU time, the largest job's
    peak RSS at each size; files and MB written at the largest; growth between the sizes."""
    sizes = sorted(runs)
    lo, hi = sizes[0], sizes[-1]
    cols = ["stage", "jobs", "wall s", "CPU s", "peak RSS MB", f"files @{hi:,}", f"MB @{hi:,}"]
    cols += ["wall exponent", "RSS ratio"]
    out = [
        f"Cells: {' / '.join(f'{n:,}' for n in sizes)} videos.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for stage in STAGES:
        if not all(stage in runs[n]["stages"] for n in sizes):
            continue
        c = [runs[n]["stages"][stage] for n in sizes]
        a, b = c[0], c[-1]
        cells = [stage]
        for key, fmt in (("jobs", "{:.0f}"), ("wall_s", "{:.0f}"), ("cpu_s", "{:.0f}"), ("rss_mb", "{:.0f}")):
            cells.append(" / ".join(fmt.format(x[key]) for x in c))
        cells += [f"{b['files']:,.0f}", f"{b['bytes'] / 1e6:,.0f}"]
        big = a["wall_s"] >= 5  # a job of a few seconds is mostly start-up: no growth to read
        cells += [f"{exponent(a['wall_s'], b['wall_s'], lo, hi):.2f}" if big else "-"]
        cells += [f"{b['rss_mb'] / a['rss_mb']:.2f}" if a["rss_mb"] >= 50 else "-"]
        out.append("| " + " | ".join(cells) + " |")
    totals = [
        f"{n:,} videos: {runs[n]['frames']:,} frames, {runs[n]['classes']} classes, generated in "
        f"{runs[n]['generate_s']:.0f} s; the workflow took {runs[n]['workflow_s'] / 60:.1f} min"
        for n in sizes
    ]
    return "\n".join(out) + "\n\n" + "\n".join(f"- {t}" for t in totals)


def projection(runs: dict[int, dict], cores: int) -> str:
    """Kinetics-400 from the largest run's per-video and per-frame costs."""
    n = max(runs)
    r = runs[n]
    st = r["stages"]
    k_videos, k_frames = KINETICS["videos"], KINETICS["videos"] * KINETICS["frames"]
    shards = round(k_videos / 256)
    files = sum(c["files"] for c in st.values()) / n
    size = sum(c["bytes"] for c in st.values()) / n
    frames = st["cache_shard"].get("frame_bytes")  # not counted apart before frames.encoding (raw frames)
    of_it = (
        f"of which the frame caches {frames / n / 1e6:.2f} MB: {r['encoding']} frames; UCF101's 13,320 videos: "
        f"{frames / n * 13_320 / 1e9:.1f} GB of frame caches"
        if frames is not None
        else "nearly all of it the 8 cached RGB frames, raw"
    )
    per_shard = sum(1 for s in ("cache_shard", "clip_embed", "mv_features") if s in st)
    # A cache job's wall time x its threads (every job ran with --cores threads): the CPU time
    # Snakemake's benchmark samples misses most of a short job's decode processes.
    core_s_a_frame = st["cache_shard"]["wall_s"] * cores / r["frames"]
    cache_h = core_s_a_frame * k_frames / 3600
    peak = max(st[s]["rss_mb"] for s in ("cache_shard", "clip_embed", "train_mvnet", "mv_features", "train_head"))
    lines = [
        f"Kinetics-400 projected from the {n:,}-video run ({k_videos:,} videos of ~10 s, ~{k_frames / 1e6:.0f} M "
        "frames, at the same 320x240):",
        f"- files: {files * k_videos:,.0f} ({files:.1f} a video); disk: {size * k_videos / 1e9:,.0f} GB "
        f"({size / 1e6:.2f} MB a video, {of_it})",
        f"- DAG: {shards} shards of 256 videos, about {shards * per_shard + 40:,} jobs",
        f"- decoding and caching: {cache_h:,.0f} core-hours ({core_s_a_frame * 1e6:.0f} core-us a frame): "
        f"{cache_h / 32:,.1f} h on 32 cores; larger frames cost more",
        f"- memory a job: at most {peak:,.0f} MB, whatever the number of videos (table)",
        gpu_projection(k_videos),
    ]
    return "\n".join(lines)


def gpu_projection(videos: int) -> str:
    """The GPU stages' hours for ``videos`` from the newest committed `make gpu-check`
    (benchmarks/gpu/*.json): 8 CLIP frames a video, MV training an epoch (3 segments a
    video), MV features at 8 x 1 views."""
    checks = sorted(Path(__file__).parent.glob("gpu/*.json"))
    if not checks:
        return "- CLIP ViT-B-32 and EfficientNet-B0 on GPUs: not measured (no `make gpu-check` committed)"
    r = json.loads(checks[-1].read_text())
    clip = [row["stage_images_per_s"] for row in r["parts"]["clip"]["rows"]]
    train = max(r["mv_train_samples_per_s"].values())
    feats = max(row["inputs_per_s"] for row in r["parts"]["mv_features"]["rows"])
    epoch_min = videos * 3 / train / 60
    return (
        f"- on one {r['device']['name']} (`make gpu-check`, {checks[-1].name}): CLIP's {videos * 8 / 1e6:.1f} M "
        f"frames at {min(clip):,.0f}-{max(clip):,.0f} a second, {videos * 8 / max(clip) / 60:,.0f}-"
        f"{videos * 8 / min(clip) / 60:,.0f} min; MV training {epoch_min:,.1f} min an epoch at {train:,.0f} segments "
        f"a second ({200 * epoch_min / 60:,.0f} h for the recipe's 200 epochs); MV features at 8 x 1 views "
        f"{videos * 8 / feats / 60:,.1f} min"
    )


def plot(runs: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for stage in STAGES:
        if all(stage in runs[n]["stages"] for n in sizes):
            cpu = [max(runs[n]["stages"][stage]["wall_s"], 0.1) for n in sizes]
            rss = [runs[n]["stages"][stage]["rss_mb"] for n in sizes]
            ax1.loglog(sizes, cpu, "o-", label=stage)
            ax2.semilogx(sizes, rss, "o-", label=stage)
    ax1.set(xlabel="videos", ylabel="wall seconds (sum over its jobs)", title="cost against dataset size")
    ax2.set(xlabel="videos", ylabel="peak RSS of one job (MB)", title="memory a job", ylim=(0, None))
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(runs: dict[int, dict], cores: int, plot_path: Path | None) -> None:
    print(f"## Scale: the workflow at {', '.join(f'{n:,}' for n in sorted(runs))} videos, --cores {cores}\n")
    print(table(runs) + "\n")
    print(projection(runs, cores))
    if plot_path:
        plot(runs, plot_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1332, 13320])
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--root", type=Path, help="where the datasets and runs go (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep each size's dataset and run")
    ap.add_argument("--encoding", choices=("jpeg", "raw"), help="frames.encoding of the runs (default: config.yaml's)")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    ap.add_argument("--plot", type=Path, help="write the cost and memory plot here")
    ap.add_argument("--from-json", type=Path, help="print the table, projection and plot of a saved run")
    a = ap.parse_args()
    if a.from_json:
        runs = {int(k): v for k, v in json.loads(a.from_json.read_text()).items()}
        report(runs, a.cores, a.plot)
        return
    root = a.root or Path(tempfile.mkdtemp(prefix="moclip-scale-"))
    runs = {}
    for n in sorted(a.sizes):
        runs[n] = run_size(n, root, a.cores, a.encoding)
        print(f"{n} videos: workflow {runs[n]['workflow_s'] / 60:.1f} min, counts {runs[n]['counts']}", flush=True)
        if a.json:
            a.json.write_text(json.dumps(runs, indent=1))
        if not a.keep:
            shutil.rmtree(root / f"ucf101-shaped-{n}")
    report(runs, a.cores, a.plot)
    if not a.root and not a.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
