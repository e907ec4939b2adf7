"""The front door and the manual: README.md stays short, links every file of docs/, and
every relative link (and #anchor) in README.md, docs/*.md and benchmarks/README.md lands on
a file and a heading."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

README_MAX_LINES = 200
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def pages(repo: Path) -> list[Path]:
    """The README, the manual and the benchmarks' page beside it."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md")), *(repo / "benchmarks").glob("README.md")]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces as '-', repeats '-1'..."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", markdown).splitlines():
        heading = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(markdown: str) -> list[str]:
    return LINK.findall(CODE.sub("", FENCE.sub("", markdown)))


def broken_links(files: list[Path]) -> list[str]:
    """Each relative link of ``files`` whose file or #anchor does not exist, as 'page: link'."""
    out = []
    for page in files:
        text = page.read_text()
        for target in links(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check offline
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                out.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                out.append(f"{page.name}: {target} (no such heading)")
    return out


def test_readme_is_a_short_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the manual belongs in docs/"


def test_every_relative_link_and_anchor_resolves():
    assert broken_links(pages(REPO)) == []


def test_the_readme_links_every_page_of_the_manual():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links((REPO / "README.md").read_text())}
    assert [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked] == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## The `moclip` command's use\n\n## Repeat\n\n## Repeat\n")
    good = (
        "[a](docs/a.md) [b](docs/a.md#the-moclip-commands-use) [c](docs/a.md#repeat-1) ![d](docs/a.md) [e](https://x.y)"
    )
    (tmp_path / "README.md").write_text(f"# R\n\n{good}\n\n```\n[code](nowhere.md)\n```\n`[inline](nowhere.md)`\n")
    assert broken_links(pages(tmp_path)) == []
    (tmp_path / "README.md").write_text("# R\n\n[x](docs/b.md) [y](docs/a.md#repeat-2) [z](#r) [w](#nope)\n")
    assert broken_links(pages(tmp_path)) == [
        "README.md: docs/b.md (no such file)",
        "README.md: docs/a.md#repeat-2 (no such heading)",
        "README.md: #nope (no such heading)",
    ]
