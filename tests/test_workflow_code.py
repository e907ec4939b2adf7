"""A change of the library's code through the workflow: the rules whose scripts import a
changed module rerun, exactly those; a comment, a docstring or blank lines rerun nothing.
tests/test_provenance.py checks every module's closure in-process; these carry the check
through Snakemake on a copy of the workflow and the finished tiny run (conftest.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import LIST_PARAMS_CHANGES, REPO, TINY_CONFIG, imported_modules, library_modules, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def workflow_copy(finished_run, tmp_path_factory) -> tuple[Path, dict[str, str], dict[str, list[str]]]:
    """The workflow and its library copied, so a test can edit a module of the copy; which
    rule made each output of the finished run (Snakemake's --summary); and the moclip
    modules each rule's script imports, as Python loads them."""
    wf = tmp_path_factory.mktemp("wf")
    for d in ("rules", "workflow_scripts", "moclip", "schemas", "report", "profiles", "config"):
        shutil.copytree(REPO / d, wf / d, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / f, wf / f)
    out = snakemake(finished_run, TINY_CONFIG, "--summary", snakefile=wf / "Snakefile", env={"PYTHONPATH": str(wf)})
    owner = {f[0]: f[2] for f in (line.split("\t") for line in out.stdout.splitlines()[1:]) if len(f) > 2}
    return wf, owner, imported_modules(sorted((wf / "workflow_scripts").glob("*.py")))


MODULES = library_modules()
# tests/test_provenance.py checks every module's closure in-process against what Python
# imports; these few carry the check through Snakemake: one module a stage's scripts alone
# import, one every job imports, and the zero-shot prompts no cache or embedding reads.
REPRESENTATIVES = [
    "moclip.video.cache",
    "moclip.clip.stream",
    "moclip.heads",
    "moclip.mv.train",
    "moclip.clip.prompts",
    "moclip.report",
    "moclip.runtime",
]


def test_the_representatives_reach_every_rule_that_imports_the_library(workflow_copy):
    """Between them the representative modules are imported by every rule's script that
    imports the library, so an edit Snakemake misses for some rule shows in one of them."""
    _, owner, imports = workflow_copy
    assert set(REPRESENTATIVES) <= set(MODULES)
    using = {rule for rule, mods in imports.items() if any(m.startswith("moclip.") for m in mods)}
    reached = {rule for rule, mods in imports.items() if any(m in mods for m in REPRESENTATIVES)}
    assert reached == using and using & set(owner.values())


@pytest.mark.parametrize("module", REPRESENTATIVES)
def test_a_library_change_reruns_exactly_the_rules_whose_scripts_import_it(finished_run, workflow_copy, module):
    """Change what one module of a copy of the library executes: the rules whose outputs
    Snakemake now finds with changed params are exactly those whose script imports the
    module (an edit to the zero-shot prompts reruns no cache and no image embedding)."""
    wf, owner, imports = workflow_copy
    expected = {rule for rule, mods in imports.items() if module in mods} & set(owner.values())
    source = wf / (module.replace(".", "/") + ".py")
    original = source.read_text()
    try:
        source.write_text(original + "\n_an_edit = 1\n")
        changed = _rules_with_changed_params(finished_run, wf, owner)
    finally:
        source.write_text(original)
    assert changed == expected
    if module == "moclip.clip.prompts":  # zero-shot alone reads them (the demo's random CLIP weights run no zero-shot)
        assert {rule for rule, mods in imports.items() if "moclip.clip.prompts" in mods} == {"zeroshot"}


def test_comments_docstrings_and_blank_lines_in_the_library_rerun_nothing(finished_run, workflow_copy):
    """Every module of a copy of the library gets a comment, blank lines and a changed
    docstring (module, function and class): Snakemake finds no changed params."""
    wf, owner, _ = workflow_copy
    originals = {f: f.read_text() for f in (wf / "moclip").rglob("*.py")}
    try:
        for f, text in originals.items():
            text = text.replace('"""', '"""Edited. ', 1) if text.startswith('"""') else text
            text = re.sub(r'^(\s*)(def|class) (\w+)(.*):\n(\s+)"""', r'\1\2 \3\4:\n\5"""Edited. ', text, flags=re.M)
            f.write_text("# an edit\n\n" + text + "\n\n# another\n")
        changed = _rules_with_changed_params(finished_run, wf, owner)
        edited = sum(t != f.read_text() for f, t in originals.items())
    finally:
        for f, text in originals.items():
            f.write_text(text)
    assert edited == len(originals)
    assert changed == set()


def _rules_with_changed_params(run: Path, wf: Path, owner: dict[str, str]) -> set[str]:
    """The rules whose outputs of ``run`` Snakemake finds with changed params under the
    workflow copy ``wf`` (its library is what the Snakefile and the jobs import)."""
    out = snakemake(
        run,
        TINY_CONFIG,
        "--list-changes",
        "params",
        snakefile=wf / "Snakefile",
        env={"PYTHONPATH": str(wf)},
        program=LIST_PARAMS_CHANGES,
    )
    return {owner[line] for line in out.stdout.splitlines() if line in owner}
