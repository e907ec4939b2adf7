"""`snakemake --report` as a user opens it: in a real browser (headless Chromium), the
landing page describes what ran and shows the summary table inline, with its numbers."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest
from conftest import TINY_CONFIG, snakemake

from moclip.report import summary_table

pytestmark = pytest.mark.workflow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium (CI installs Debian's chromium package: .ci/run)"
)


def _browser(*args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


@pytest.fixture(scope="module")
def reported(finished_run, tmp_path_factory):
    """A copy of the finished run with its ``snakemake --report report.html``, made once for
    the tests that open it (each writes its own probe pages beside it)."""
    run = tmp_path_factory.mktemp("reported") / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    snakemake(run, TINY_CONFIG, "--report", "report.html")
    return run


@needs_browser
def test_report_landing_page_shows_what_ran_and_the_summary_table(reported, tmp_path):
    report = reported / "report.html"
    dom = html.unescape(_browser("--dump-dom", report.as_uri()).stdout)
    assert "What ran" in dom and "the embedded demo dataset" in dom
    # pretrained: none: the summary's warning, and no second one from the description page
    assert "moclip-tiny" in dom and "the CLIP weights are random" in dom and "Random CLIP weights" not in dom
    summary = json.loads((reported / "results" / "summary.json").read_text())
    header, rows, notes = summary_table(summary)
    assert "<table" in dom and all(h in dom for h in header)
    for row in rows:  # every cell of every method, as the summary computed it
        assert all(cell in dom for cell in row), row
    _browser("--screenshot=" + str(tmp_path / "report.png"), "--window-size=1400,1800", report.as_uri())
    assert (tmp_path / "report.png").stat().st_size > 10_000  # a rendered page, kept for a human to look at


# The report in a frame of a laptop's (or a desktop's) window: where the title sits, and
# whether each cell of the results table can be scrolled into the window.
PROBE = """<!doctype html><html><body style="margin:0">
<iframe id="f" src="report.html" width="{w}" height="{h}" style="border:0"></iframe>
<script>
setTimeout(function () {{
  var d = document.getElementById("f").contentDocument, t = d.querySelector("h1.title").getBoundingClientRect();
  var cells = Array.from(d.querySelectorAll("table.moclip td")), seen = 0;
  cells.forEach(function (c) {{
    c.scrollIntoView({{block: "nearest", inline: "nearest"}});
    var b = c.getBoundingClientRect();
    seen += b.top >= 0 && b.left >= 0 && b.bottom <= {h} && b.right <= {w};
  }});
  var w = d.querySelector("p.moclip-warning"), code = d.querySelectorAll("p.moclip code").length;
  var warn = w ? getComputedStyle(w).backgroundColor : null;
  var probe = {{top: t.top, cells: cells.length, seen: seen, warn: warn, code: code}};
  document.body.setAttribute("data-probe", JSON.stringify(probe));
}}, 10000);
</script></body></html>"""


@needs_browser
@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_report_landing_page_reads_from_its_top_on_a_laptop_and_a_desktop(reported, size):
    """Snakemake centres the landing page in its scrolling box, which put a tall page's
    title above the part a reader can scroll to (report/stylesheet.css, from the profiles)."""
    w, h = size
    probe_page = reported / f"probe-{w}x{h}.html"  # beside report.html, which its frame opens
    probe_page.write_text(PROBE.format(w=w, h=h))
    dom = _browser("--allow-file-access-from-files", "--dump-dom", probe_page.as_uri()).stdout
    probe = json.loads(html.unescape(re.search(r'data-probe="([^"]*)"', dom).group(1)))
    assert 0 <= probe["top"] < h / 2, probe  # the title, at the top of the window
    assert probe["cells"] >= 3 * 7 and probe["seen"] == probe["cells"], probe
    assert probe["warn"] == "rgb(255, 244, 214)" and probe["code"] >= 1, probe  # a warning box; names as code


# A split's page of the report (its category in the menu), as a reader opens it: the rows
# of its results table (not the summary's, table.moclip), each with its label and the
# buttons that open the file.
SPLIT_PAGE = """<!doctype html><html><body>
<iframe id="f" src="report.html" width="1400" height="900"></iframe>
<script>
setTimeout(function () {{
  var w = document.getElementById("f").contentWindow;
  w.eval("app").showCategory("Split {k}");  // the menu's entry (app: the report's own global)
  setTimeout(function () {{
    var rows = Array.from(w.document.querySelectorAll("table:not(.moclip) tbody tr")).map(function (r) {{
      return {{text: r.innerText.trim(), open: r.querySelectorAll("a, button, img").length}};
    }});
    document.body.setAttribute("data-probe", JSON.stringify(rows));
  }}, 3000);
}}, 8000);
</script></body></html>"""
SPLIT_RESULTS = {  # every result file of a split's report (rules/report.smk) and its label
    "table.html": "table: every method's top-1 and top-5",
    "confusion_fusion.png": "confusion matrix (fusion)",
    "per_class_top1.png": "per-class top-1",
    "training_curves.png": "training curves",
}


@needs_browser
def test_each_split_page_lists_every_result_of_the_split_by_name(reported):
    """Each "Split K" page of the report has a row a result file of the split, labelled
    with what it is and with a control that opens it (one unlabelled row hid all but one)."""
    files = {p.name for p in (reported / "results" / "reports" / "split1").iterdir() if p.suffix in (".html", ".png")}
    assert files == set(SPLIT_RESULTS)  # a new result file needs its label here
    for k in (1, 2, 3):
        probe_page = reported / f"probe-split{k}.html"
        probe_page.write_text(SPLIT_PAGE.format(k=k))
        dom = _browser("--allow-file-access-from-files", "--dump-dom", probe_page.as_uri()).stdout
        rows = json.loads(html.unescape(re.search(r'data-probe="([^"]*)"', dom).group(1)))
        assert sorted(r["text"] for r in rows) == sorted(SPLIT_RESULTS.values()), rows
        assert all(r["open"] >= 1 for r in rows), rows


def test_each_split_has_its_table_beside_its_plots(finished_run):
    for k in (1, 2, 3):
        table = (finished_run / "results" / "reports" / f"split{k}" / "table.html").read_text()
        rep = json.loads((finished_run / "results" / "reports" / f"split{k}" / "metrics.json").read_text())
        for name, m in rep["methods"].items():
            top1 = m.get("top1_mean", m["top1"])  # a head's table cell is its mean over seeds
            top5 = m.get("top5_mean", m["top5"])
            assert f"<td>{name}</td>" in table and f"<td>{top1:.3f}" in table and f"{top5:.3f}" in table
            assert f"<td>{m['n_test']}</td>" in table
