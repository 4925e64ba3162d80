"""HTML building blocks of the report: escaping, number formatting, tables."""

from __future__ import annotations

import html


def e(value) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def fmt(value, digits: int = 4) -> str:
    """A cell's text: 4 significant digits for floats, "—" for None, "yes"/"" for bools."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def pct(value) -> str:
    """An accuracy in [0, 1] as a percentage with two decimals."""
    return "—" if value is None else f"{100 * float(value):.2f}%"


def table(headers, rows, *, classes=None) -> str:
    """A ``<table>``; numbers are right-aligned, ``classes[i]`` styles row i (e.g. ``sel``)."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{e(classes[i])}"' if classes and classes[i] else ""
        cells = "".join(
            f'<td class="num">{e(fmt(c))}</td>' if isinstance(c, (int, float))
            and not isinstance(c, bool) else f"<td>{e(fmt(c))}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(pairs) -> str:
    """A two-column setting/value table."""
    return table(["setting", "value"], [[k, fmt(v)] for k, v in pairs])
