"""The library's layers: the parse-time package ``moclip.workflow``, and every module the
Snakefile and rules import, load none of the heavy libraries, so each parse of the workflow
(every SLURM job parses it again) stays cheap."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys

import pytest
from conftest import REPO

import moclip.workflow

HEAVY = ("torch", "torchvision", "av", "h5py")
PARSE_TIME = sorted(m.name for m in pkgutil.iter_modules(moclip.workflow.__path__, "moclip.workflow."))
_IMPORT = re.compile(r"^(?:from (moclip[\w.]*) import|import (moclip[\w.]*))", re.M)
WORKFLOW_IMPORTS = sorted(
    {a or b for f in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")] for a, b in _IMPORT.findall(f.read_text())}
)


def test_the_modules_checked_are_found():
    """The lists below come from the package and the rules' own import lines."""
    assert len(PARSE_TIME) >= 7 and "moclip.workflow.config" in PARSE_TIME
    assert "moclip.workflow.config" in WORKFLOW_IMPORTS and "moclip.workflow.layout" in WORKFLOW_IMPORTS


def heavy_loaded(module: str) -> list[str]:
    """The heavy libraries importing ``module`` alone loads, in a fresh interpreter (the
    parse's own order cannot hide a leak)."""
    code = f"import sys, {module}; print(','.join(h for h in {HEAVY!r} if h in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    return [h for h in r.stdout.strip().split(",") if h]


@pytest.mark.parametrize("module", sorted({"moclip.workflow", *PARSE_TIME, *WORKFLOW_IMPORTS}))
def test_a_parse_time_module_imports_no_heavy_library(module):
    assert heavy_loaded(module) == []


def test_the_check_sees_a_heavy_import():
    assert heavy_loaded("moclip.video.codec") == ["av"]
