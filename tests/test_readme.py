"""The README promises what the demo prints: its demo table is the table of the summary a
default `make demo` writes today, verbatim. `make readme-numbers` rewrites it from a run."""

from __future__ import annotations

import os
import re

import pytest
from conftest import REPO, snakemake

pytestmark = pytest.mark.workflow

README = REPO / "README.md"
BLOCK = re.compile(r"(<!-- demo-table: .*? -->\n)(.*?)(<!-- /demo-table -->)", re.S)


def summary_table(markdown: str) -> str:
    return "".join(line + "\n" for line in markdown.splitlines() if line.startswith("|"))


def test_readme_demo_table_is_what_the_demo_prints(tmp_path):
    run = tmp_path / "demo"
    snakemake(run, {})  # the defaults: exactly `make demo`
    table = summary_table((run / "results" / "summary.md").read_text())
    text = README.read_text()
    block = BLOCK.search(text)
    assert block, "README.md: no <!-- demo-table: ... --> block"
    if os.environ.get("MOCLIP_UPDATE_README"):
        README.write_text(text[: block.start(2)] + table + text[block.end(2) :])
        return
    assert block.group(2) == table, "README.md's demo table is stale: run `make readme-numbers`"
