"""A drift report a person reads at a glance: per feature, the reference and the current
window side by side (matplotlib, rendered off-screen), as a PNG or an HTML page."""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import UTC, datetime
from typing import Any

from app.core.drift import PREDICTION


def render_png(model: str, version: int, evaluation: dict[str, Any]) -> bytes:
    """One panel per feature: reference vs current share per bin, drifted panels in red."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in threads

    features = evaluation.get("features", [])
    columns = 3
    rows = max(1, math.ceil(len(features) / columns))
    figure = Figure(figsize=(5 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(features) :]:
        ax.axis("off")
    for ax, feature in zip(axes.flat, features, strict=False):
        _panel(ax, feature)
    window = evaluation.get("window", {})
    figure.suptitle(
        f"{model} v{version}: reference vs {window.get('rows', 0):,} logged rows "
        f"({_when(window.get('start'))} to {_when(window.get('end'))})",
        fontsize=12,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def _panel(ax: Any, feature: dict[str, Any]) -> None:
    reference, current = feature.get("reference_hist", []), feature.get("current_hist", [])
    positions = range(len(reference))
    ax.bar([p - 0.2 for p in positions], reference, width=0.4, label="reference", color="#7f8c8d")
    color = "#c0392b" if feature.get("drifted") else "#2980b9"
    ax.bar([p + 0.2 for p in positions], current, width=0.4, label="current", color=color)
    name = "prediction" if feature["feature"] == PREDICTION else feature["feature"]
    psi = feature.get("psi")
    title = f"{name}  PSI {psi:.3f}" if psi is not None else name
    ax.set_title(("DRIFT  " if feature.get("drifted") else "") + title, color=color, fontsize=10)
    labels = feature.get("bin_labels", [])
    ax.set_xticks(list(positions), labels, rotation=45, ha="right", fontsize=6)
    ax.set_ylabel("share", fontsize=8)
    ax.legend(fontsize=7)


def render_html(model: str, version: int, evaluation: dict[str, Any]) -> str:
    """The PNG and a table of every statistic, on one page."""
    image = base64.b64encode(render_png(model, version, evaluation)).decode("ascii")
    rows = "".join(_row(f) for f in evaluation.get("features", []))
    title = html.escape(f"Drift report: {model} v{version}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "tr.drift td{background:#fdecea}</style></head><body>"
        f"<h1>{title}</h1><img alt='histograms' src='data:image/png;base64,{image}'>"
        "<table><tr><th>feature</th><th>samples</th><th>missing</th><th>PSI</th>"
        "<th>JS distance</th><th>KS</th><th>Wasserstein (sd)</th><th>p-value</th>"
        f"<th>drift</th><th>why</th></tr>{rows}</table></body></html>"
    )


def _row(feature: dict[str, Any]) -> str:
    def number(key: str, digits: int = 3) -> str:
        value = feature.get(key)
        return "" if value is None else f"{value:.{digits}g}"

    name = "prediction" if feature["feature"] == PREDICTION else feature["feature"]
    css = " class='drift'" if feature.get("drifted") else ""
    return (
        f"<tr{css}><td>{html.escape(name)}</td><td>{feature.get('samples', 0)}</td>"
        f"<td>{feature.get('missing_rate', 0):.1%}</td><td>{number('psi')}</td>"
        f"<td>{number('js_distance')}</td><td>{number('ks_statistic')}</td>"
        f"<td>{number('wasserstein')}</td><td>{number('p_value', 2)}</td>"
        f"<td>{'yes' if feature.get('drifted') else 'no'}</td>"
        f"<td>{html.escape(feature.get('reason', ''))}</td></tr>"
    )


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class MatplotlibDriftReports:
    """`DriftReports` drawn with matplotlib, off-screen."""

    def png(self, model: str, version: int, evaluation: dict[str, Any]) -> bytes:
        """See `DriftReports.png`."""
        return render_png(model, version, evaluation)

    def html(self, model: str, version: int, evaluation: dict[str, Any]) -> str:
        """See `DriftReports.html`."""
        return render_html(model, version, evaluation)
