"""The head registry: each head's streams decide its inputs, its directory and its settings."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from conftest import REPO
from test_heads import feature_run  # noqa: F401 (the fixture)

import moclip.heads as heads
from moclip.heads import HeadSettings, build_head, load_head
from moclip.methods import HEADS, PRODUCT, TRAINED, Head, head_inputs, lives_in, shapes
from moclip.plots import PER_CLASS_METHODS
from moclip.workflow.plan import head_settings


def test_a_head_lives_under_the_tags_of_the_streams_it_reads():
    assert head_inputs("fusion", "ViT-B-32_openai", "effnet-1a2b") == "ViT-B-32_openai/effnet-1a2b"
    assert head_inputs("clip_linear", "ViT-B-32_openai", "effnet-1a2b") == "ViT-B-32_openai/no-mv"
    assert lives_in("clip_linear", "c", "no-mv") and not lives_in("fusion", "c", "no-mv")
    assert lives_in("fusion", "c", "effnet-1a2b") and not lives_in("clip_linear", "c", "effnet-1a2b")


def test_a_head_setting_shapes_only_the_heads_that_use_it():
    config = {"heads": {"hidden": 512, "dropout": 0.5, "lr": 1e-3, "mv_draws": 3, "frame_norm": True, "seeds": [0]}}
    assert set(head_settings(config, "fusion")) == {"hidden", "dropout", "lr", "mv_draws", "frame_norm"}
    assert set(head_settings(config, "clip_linear")) == {"lr", "frame_norm"}
    assert set(head_settings(config)) == set(config["heads"]) - {"seeds"}
    assert shapes("fusion", "hidden") and not shapes("clip_linear", "mv_draws") and shapes("clip_linear", "lr")


def test_a_new_head_is_one_registry_entry(feature_run, monkeypatch):  # noqa: F811
    """An MV-only linear probe, registered and nothing else: it reads only the MV shards
    (the CLIP file is not even there), lives under no-clip/<mv>, and trains."""
    rows, d = feature_run
    monkeypatch.setitem(HEADS, "mv_linear", Head(("mv",), "linear"))  # the one dict every module reads
    assert head_inputs("mv_linear", "c", "m") == "no-clip/m"
    assert type(build_head("mv_linear", [5], 3, HeadSettings()).net).__name__ == "Linear"
    (d / "clip.h5").rename(d / "elsewhere.h5")
    s = HeadSettings(lr=1e-2, epochs=30, batch_size=8, normalize="none", mv_draws=0)
    m = heads.train_head(
        head="mv_linear",
        manifest=d / "manifest.tsv",
        split=1,
        clip=[],
        mv=[d / "mv.h5"],
        settings=s,
        seeds=[0],
        model=d / "o" / "model.pt",
        predictions=d / "o" / "predictions.tsv",
        training=d / "o" / "training.json",
        metrics=d / "o" / "metrics.json",
    )
    assert m["method"] == "mv_linear" and m["top1"] >= 0.8  # the MV features carry the class
    assert load_head(d / "o" / "model.pt")[1]["dims"] == [5]
    assert json.loads((d / "o" / "metrics.json").read_text())["n_test"] == 6


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """The string literals of a Python file's code (its docstrings left out)."""
    tree = ast.parse(path.read_text())
    docs = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def test_the_heads_roles_are_named_in_the_registry_alone():
    """The report's confusion matrix, `moclip predict`'s model and the per-class plot's bars
    come from moclip.methods (PRODUCT, TRAINED): no code names a head but the registry, so a
    head renamed or a product changed there is changed everywhere."""
    assert PRODUCT in HEADS and PER_CLASS_METHODS == TRAINED == ("mv_only", *HEADS)
    names = re.compile(rf"(?<![A-Za-z])({'|'.join(HEADS)})(?![A-Za-z])")  # fusion_model too, not confusion
    found = [
        f"{p.relative_to(REPO)}:{line}: {text!r}"
        for p in sorted([*(REPO / "moclip").glob("*.py"), *(REPO / "workflow_scripts").glob("*.py")])
        if p.name != "methods.py"
        for line, text in _code_strings(p)
        if names.search(text)
    ]
    for p in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]:  # quoted strings outside comments
        for i, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#")[0]
            found += [f"{p.relative_to(REPO)}:{i}: {s!r}" for s in re.findall(r"\"[^\"]*\"", code) if names.search(s)]
    assert not found, found
