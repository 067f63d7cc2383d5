"""The HTML and plotting helpers every report.html section uses (escaping, tables, embedded PNGs), apart
from the sections so that a section module (report_agreement.py) needs no import of report.py.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Any

_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c"}


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, int):
        return f"{x:,}"
    return _e(x)


def _table(headers: list[str], rows: list[list[Any]], row_classes: list[str] | None = None, raw: set[int] = frozenset()) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"]
    for k, row in enumerate(rows):
        cls = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        cells = []
        for j, v in enumerate(row):
            if j in raw:
                cells.append(f"<td>{v}</td>")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<td class="num">{_num(v)}</td>')
            else:
                cells.append(f"<td>{_e(v)}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()  # one draw; bbox_inches="tight" would draw every figure twice
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{_e(alt)}">'


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
