"""The tables the reports write: Markdown for the terminal and the repository, and
self-contained HTML (escaped, lightly styled) for Snakemake's report and any browser."""

from __future__ import annotations

import html
import re


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table, a line a row."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _inline(text: str) -> str:
    """Escaped HTML of a note, its `backticked` names as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def html_table(
    header: list[str], rows: list[list[str]], notes: list[str] = (), caption: str = "", warning: str = ""
) -> str:
    """A self-contained HTML table (escaped, lightly styled) with a ``warning`` above it and
    notes under it: shown inline by Snakemake's report and by any browser."""
    esc = html.escape
    style = (
        "<style>table.moclip{border-collapse:collapse;font:14px sans-serif;margin:8px 0}"
        "table.moclip th,table.moclip td{border:1px solid #bbb;padding:4px 8px;text-align:right}"
        "table.moclip td:first-child,table.moclip th:first-child{text-align:left}"
        "p.moclip{font:13px sans-serif;color:#333}"
        "p.moclip code{font:12px monospace;background:#f2f2f2;padding:0 3px;border-radius:3px}"
        "p.moclip-warning{font:bold 13px sans-serif;color:#7a4a00;background:#fff4d6;"
        "border-left:4px solid #e0a000;padding:6px 10px;margin:8px 0}</style>"
    )
    out = [style]
    if warning:
        out.append(f'<p class="moclip-warning" role="alert">{_inline(warning)}</p>')
    out.append('<table class="moclip">')
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
    out.append("</table>")
    out += [f'<p class="moclip">{_inline(n)}</p>' for n in notes]
    return "\n".join(out) + "\n"
