"""The experiments' comparison: the change from the first against the seed noise, job times."""

from __future__ import annotations

import json
import math

import pytest

from moclip.compare import compare, comparison, comparison_markdown, job_times


def _summary(top1: dict[str, list[float]], sd: float | None, seeds: int = 3) -> dict:
    """A summary.json's methods: per split a mean over ``seeds`` seeds with spread ``sd``."""
    methods = {}
    for method, values in top1.items():
        splits = {
            str(k + 1): {"top1": v, "top5": 1.0, "top1_sd_seeds": sd, "seeds": seeds} for k, v in enumerate(values)
        }
        mean = sum(values) / len(values)
        methods[method] = {"splits": splits, "top1_mean": mean, "top1_sd": 0.01, "gflops": 2.0}
    return {"methods": methods}


def test_a_change_is_beyond_the_noise_only_past_twice_the_seed_standard_error():
    base = _summary({"fusion": [0.80, 0.80, 0.80], "mv_only": [0.5, 0.5, 0.5]}, sd=0.03)
    small = _summary({"fusion": [0.81, 0.81, 0.81], "mv_only": [0.6, 0.6, 0.6]}, sd=0.03)
    big = _summary({"fusion": [0.90, 0.90, 0.90]}, sd=0.03)
    comp = comparison({"base": base, "small": small, "big": big}, {})
    rows = {(r["experiment"], r["method"]): r for r in comp["rows"]}
    # two experiments x 3 splits, each split a mean of 3 seeds of sd 0.03: se = sqrt(6 * 0.03^2 / 3) / 3
    se = math.sqrt(6 * 0.03**2 / 3) / 3
    assert rows["small", "fusion"]["seed_noise"] == pytest.approx(se)
    assert rows["small", "fusion"]["delta"] == pytest.approx(0.01) and not rows["small", "fusion"]["beyond_noise"]
    assert rows["big", "fusion"]["beyond_noise"] and rows["big", "fusion"]["delta"] == pytest.approx(0.10)
    assert "delta" not in rows["base", "fusion"] and rows["base", "fusion"]["gmacs"] == 1.0
    md = comparison_markdown(comp)
    assert "| small | fusion | 0.810 ± 0.010 | +0.010 ± 0.014 (within 2x the seed noise) | 1.00 |" in md
    assert "| big | fusion | 0.900 ± 0.010 | +0.100 ± 0.014 (beyond 2x the seed noise) | 1.00 |" in md


def test_a_method_run_once_a_split_has_no_seed_noise_and_says_so():
    one = _summary({"mv_only": [0.5, 0.6]}, sd=None, seeds=1)
    other = _summary({"mv_only": [0.7, 0.6]}, sd=None, seeds=1)
    (row,) = [r for r in comparison({"a": one, "b": other}, {})["rows"] if r["experiment"] == "b"]
    assert row["seed_noise"] is None and row["beyond_noise"] is None and row["delta"] == pytest.approx(0.1)


def test_job_times_sum_the_matched_benchmark_files_and_count_gpu_stages(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, s, cpu in [
        ("cache/shard-0.tsv", 10, 15),
        ("clip/t/shard-0.tsv", 20, 30),
        ("experiments/b/heads/x.tsv", 5, 5),
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(header + f"{s}\t0\t0\t0\t0\t0\t0\t0\t0\t{cpu}\n")
    t = job_times(tmp_path, ["cache/**/*.tsv", "clip/**/*.tsv"], gpu_dirs=["clip"])
    assert t == {"jobs": 2, "wall_s": 30.0, "cpu_s": 45.0, "gpu_wall_s": 20.0}
    assert job_times(tmp_path, ["experiments/b/heads/**/*.tsv"])["jobs"] == 1


def test_compare_writes_the_table_the_page_and_the_plot(tmp_path):
    paths = {}
    for name, v in (("a", 0.5), ("b", 0.7)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(_summary({"fusion": [v, v]}, sd=0.01)))
    out = {
        k: tmp_path / f"experiments.{ext}"
        for k, ext in (("json", "json"), ("md", "md"), ("html", "html"), ("plot", "png"))
    }
    comp = compare(summaries=paths, jobs={"a": [], "b": []}, benchmarks=tmp_path, gpu_dirs=[], **out)
    assert json.loads(out["json"].read_text()) == comp and comp["experiments"] == ["a", "b"]
    assert "<th>change from a (± seed noise)</th>" in out["html"].read_text()
    assert out["plot"].read_bytes()[:4] == b"\x89PNG" and "warning" not in comp
    warned = {**json.loads(paths["b"].read_text()), "warning": "random CLIP weights"}
    paths["b"].write_text(json.dumps(warned))
    compare(summaries=paths, jobs={"a": [], "b": []}, benchmarks=tmp_path, gpu_dirs=[], **out)
    assert out["md"].read_text().startswith("# moclip experiments\n\n> random CLIP weights\n")
    assert 'class="moclip-warning"' in out["html"].read_text()
