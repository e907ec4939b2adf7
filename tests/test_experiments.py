"""Experiments: each a whole config checked as one, and the roots that decide what they share."""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import REPO, differences, dotted

from moclip.methods import HEADS, head_inputs
from moclip.workflow.config import ConfigError, key_line, load_config
from moclip.workflow.experiments import (
    SHARED_STAGES,
    by_root,
    describe,
    experiment_configs,
    experiments,
    own_jobs,
    stage_keys,
)

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def _run(tmp_path, experiments_yaml: str, extra: str = ""):
    f = tmp_path / "exp.yaml"
    f.write_text(extra + "experiments:\n" + experiments_yaml)
    files = [REPO / "config.yaml", f]
    config = load_config(files)
    return config, files, f


def test_a_run_without_experiments_is_one_unnamed_experiment_at_the_top_level(tmp_path):
    config = load_config([REPO / "config.yaml"])
    assert experiment_configs(config, SCHEMA, [REPO / "config.yaml"]) == {}
    (e,) = experiments(config, {})
    assert (e.name, e.own, set(e.roots.values())) == ("", "", {""})
    assert describe([e]) == []


def test_experiments_share_each_stage_whose_settings_agree_and_own_the_rest(tmp_path):
    config, files, _ = _run(
        tmp_path,
        "  base: {}\n"
        "  head-lr: {heads: {lr: 0.003}}\n"
        "  bilinear: {clip: {interpolation: bilinear}}\n"
        "  more-frames: {frames: {count: 4}}\n",
    )
    configs = experiment_configs(config, SCHEMA, files)
    assert list(configs) == ["base", "head-lr", "bilinear", "more-frames"]
    assert (
        configs["head-lr"]["heads"]["lr"] == 0.003
        and configs["head-lr"]["heads"]["epochs"] == config["heads"]["epochs"]
    )
    exps = experiments(config, configs)
    base, lr, bilinear, frames = exps
    # base is the run itself: every output at the top level, as without experiments
    assert set(base.roots.values()) == {""} and base.own == ""
    assert set(lr.roots.values()) == {""} and lr.own == "experiments/head-lr/"  # heads only
    assert bilinear.roots["clip"] == "experiments/bilinear/" and bilinear.roots["cache"] == ""
    assert bilinear.roots["mvnet"] == "" and bilinear.clip_tag != base.clip_tag
    # more frames: new caches and CLIP embeddings; the MV maps, and so the MV network, are the same
    assert frames.roots["cache"] == frames.roots["clip"] == "experiments/more-frames/"
    assert frames.roots["mvnet"] == frames.roots["mv_features"] == ""
    lines = describe(exps)
    assert lines[0] == (
        "experiment base: the run itself (its outputs at the top level): "
        "adds cache, clip, mvnet, mv_features, heads, reports"
    )
    assert (
        lines[1]
        == "experiment head-lr: adds heads, reports; shares cache (base), clip (base), mvnet (base), mv_features (base)"
    )
    assert lines[2].startswith("experiment bilinear: adds clip, heads, reports; shares cache (base)")
    # the jobs each added: those of the outputs it is the first to use, at their roots, for its tags
    inputs = {h: head_inputs(h, lr.clip_tag, lr.mv_tag) for h in HEADS}
    assert own_jobs(lr, exps) == [
        *(f"experiments/head-lr/heads/{inputs[h]}/split*/{h}.tsv" for h in HEADS),
        "experiments/head-lr/reports/*.tsv",
        "experiments/head-lr/summary.tsv",
    ]
    assert own_jobs(base, exps)[:3] == [
        "cache/**/*.tsv",
        f"clip/{base.clip_tag}/**/*.tsv",
        f"mvnet/{base.mv_tag}/**/*.tsv",
    ]
    assert "reports/*.tsv" in own_jobs(base, exps) and "summary.tsv" in own_jobs(base, exps)
    assert own_jobs(bilinear, exps)[0] == f"experiments/bilinear/clip/{bilinear.clip_tag}/**/*.tsv"
    # the jobs of an output root run with the config of the experiment whose outputs it holds
    roots = by_root(config, exps)
    assert roots == {
        "": base,
        "experiments/head-lr/": lr,
        "experiments/bilinear/": bilinear,
        "experiments/more-frames/": frames,
    }


def test_the_run_itself_is_the_first_donor_whatever_the_order_of_the_experiments(tmp_path):
    """The top level holds the run's own settings' outputs: an experiment listed before the one
    equal to the run computes what differs under its name, and without an experiment equal to
    the run, the top level holds only the stages the experiments share with it."""
    config, files, _ = _run(tmp_path, "  bilinear: {clip: {interpolation: bilinear}}\n  base: {}\n")
    bilinear, base = exps = experiments(config, experiment_configs(config, SCHEMA, files))
    assert bilinear.roots["clip"] == "experiments/bilinear/" and bilinear.roots["cache"] == ""
    assert base.own == "" and set(base.roots.values()) == {""}
    lines = describe(exps)
    assert lines[0].startswith("experiment bilinear: adds cache, clip, mvnet, mv_features, heads, reports")
    assert lines[1] == (
        "experiment base: the run itself (its outputs at the top level): adds clip, heads, reports; "
        "shares cache (bilinear), mvnet (bilinear), mv_features (bilinear)"
    )
    assert by_root(config, exps)[""] is base

    config, files, _ = _run(tmp_path, "  a: {heads: {lr: 0.003}}\n  b: {clip: {interpolation: bilinear}}\n")
    a, b = exps = experiments(config, experiment_configs(config, SCHEMA, files))
    run = by_root(config, exps)[""]  # the run itself, though no experiment is it
    assert run.name == "" and run.config["heads"]["lr"] == config["heads"]["lr"] != 0.003
    assert stage_keys(run.config) == stage_keys(a.config)  # a's shared stages run with the run's settings
    assert set(by_root(config, exps)) == {"", "experiments/a/", "experiments/b/"}


def test_an_experiment_that_matches_an_earlier_one_shares_all_but_its_heads(tmp_path):
    config, files, _ = _run(tmp_path, "  a: {heads: {lr: 0.003}}\n  b: {heads: {epochs: 3}}\n")
    a, b = experiments(config, experiment_configs(config, SCHEMA, files))
    assert a.roots == b.roots == dict.fromkeys(SHARED_STAGES, "") and a.own != b.own


def test_experiments_whose_whole_configs_agree_share_their_heads_and_reports(tmp_path):
    config, files, _ = _run(tmp_path, "  a: {heads: {lr: 0.003}}\n  b: {heads: {lr: 0.003}}\n  c: {}\n")
    a, b, c = exps = experiments(config, experiment_configs(config, SCHEMA, files))
    assert a.own == b.own == "experiments/a/" and c.own == ""
    assert describe(exps)[1] == (
        "experiment b: adds nothing; shares cache (a), clip (a), mvnet (a), mv_features (a), heads (a), reports (a)"
    )
    assert own_jobs(b, exps) == [] and own_jobs(c, exps)[-1] == "summary.tsv"
    assert set(by_root(config, exps)) == {"", "experiments/a/"}


def test_a_bad_experiment_is_named_with_its_file_line_and_key(tmp_path):
    config, files, f = _run(
        tmp_path, "  fine: {}\n  typo:\n    mvnet:\n      lrr: 0.1\n  neg:\n    heads: {epochs: -1}\n"
    )
    with pytest.raises(ConfigError) as e:
        experiment_configs(config, SCHEMA, files)
    lines = str(e.value).splitlines()
    typo = key_line(f, ["experiments", "typo", "mvnet", "lrr"])
    assert any(
        line.startswith(f"experiment 'typo': {f}:{typo}: unknown key 'mvnet.lrr' (did you mean 'lr'?)")
        for line in lines
    )
    neg = key_line(f, ["experiments", "neg", "heads", "epochs"])
    assert any(
        line.startswith(f"experiment 'neg': {f}:{neg}: heads.epochs: -1 is less than the minimum") for line in lines
    ), lines
    assert (typo, neg) == (5, 7) and not any("fine" in line for line in lines)


def test_what_experiments_must_share_cannot_be_overridden(tmp_path):
    config, files, f = _run(tmp_path, "  a: {}\n  b:\n    dataset:\n      shards: 7\n")
    with pytest.raises(ConfigError, match=rf"^experiment 'b': {f}:5: dataset.shards cannot differ between experiments"):
        experiment_configs(config, SCHEMA, files)
    config, files, f = _run(tmp_path, "  a: {}\n  b:\n    gpu:\n      jobs_per_card: 3\n")  # a machine setting
    with pytest.raises(ConfigError, match=rf"^experiment 'b': {f}:4: gpu cannot differ between experiments"):
        experiment_configs(config, SCHEMA, files)


def test_an_experiment_name_must_be_a_directory_name(tmp_path):
    config, files, f = _run(tmp_path, "  'a/b': {}\n")
    with pytest.raises(ConfigError, match="is not a name"):
        experiment_configs(config, SCHEMA, files)


def test_the_schema_rejects_a_non_mapping_experiment(tmp_path):
    from moclip.workflow.config import check_config

    config, files, f = _run(tmp_path, "  a: 3\n")
    with pytest.raises(ConfigError, match="experiments.a"):
        check_config(config, SCHEMA, files)


# --------------------------------------------------------------------------- the UCF101 ablation


def test_the_ablation_switches_one_recipe_row_to_ours_each_and_then_every_row():
    """config/ucf101-ablation.yaml over the paper preset: the first experiment is the paper's
    recipe, each other switches the keys of one row of docs/ucf101.md's recipe table to ours
    (config/ucf101.yaml's values), every row once, and the last is ours in full."""
    defaults, presets = REPO / "config.yaml", REPO / "config"
    paper = load_config([defaults, presets / "ucf101-paper.yaml"])
    ours = load_config([defaults, presets / "ucf101.yaml"])
    files = [defaults, presets / "ucf101-paper.yaml", presets / "ucf101-ablation.yaml"]
    config = load_config(files)
    configs = experiment_configs(config, SCHEMA, files)
    ignore = {"results", "experiments"}
    doc = (REPO / "docs" / "ucf101.md").read_text()
    table = doc.split("<!-- recipe-table")[1].split("<!-- /recipe-table -->")[0]
    rows = [
        frozenset(re.findall(r"`([a-z_.]+)`", line.split("|")[1]))
        for line in table.splitlines()[3:]
        if line.startswith("| `")
    ]
    names = list(configs)
    assert names[0] == "paper" and names[-1] == "ours"
    assert set(differences(configs["paper"], paper)) <= ignore
    switched = []
    for name in names[1:-1]:
        diff = {k: v for k, v in differences(configs[name], paper).items() if k not in ignore}
        assert frozenset(diff) in rows, (name, diff)
        assert all(v == dotted(ours, k) for k, v in diff.items()), name
        switched.append(frozenset(diff))
    assert sorted(switched, key=sorted) == sorted(rows, key=sorted)  # every row, once
    assert set(differences(configs["ours"], ours)) <= ignore
    assert yaml.safe_load((presets / "ucf101-ablation.yaml").read_text())["results"] not in (
        paper["results"],
        ours["results"],
    )
