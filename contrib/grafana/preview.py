"""
Draw the panels of C{contrib/grafana/keycard.json} from a running
Prometheus, laid out as the dashboard lays them out: a picture of what the
dashboard shows, without Grafana (docs/production.rst shows one, made by
C{tests/test_dashboard.py} from a real bouncer and a real Prometheus).

    python contrib/grafana/preview.py --prometheus http://127.0.0.1:9090 \\
        --job keycard-bouncer --minutes 5 --out dashboard.png

Drawing needs matplotlib (C{pip install matplotlib}); L{expressions} and
L{instantQuery}, which the tests use, need only the standard library.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).with_name("keycard.json")

#: The Prometheus job the dashboard shows by default.
JOB = "keycard-bouncer"

#: A legend's C{{{label}}} reference.
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def expressions(
    panel: dict[str, Any], job: str, rateInterval: str
) -> list[tuple[str, str]]:
    """
    The queries of a panel, with the dashboard's variables set as Grafana
    sets them: C{$job} to C{job}, every instance, and C{$__rate_interval}
    to C{rateInterval} (such as C{"30s"}).

    @return: each query's legend format (or C{""}) and expression.
    """
    found = []
    for target in panel.get("targets", []):
        expr = target["expr"].replace("$job", job).replace('"$instance"', '".*"')
        expr = expr.replace("$__rate_interval", rateInterval)
        found.append((target.get("legendFormat", ""), expr))
    return found


def _get(prometheus: str, path: str, **params: str) -> Any:
    url = f"{prometheus.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
        answer = json.load(response)
    if answer.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {params}: {answer}")
    return answer["data"]


def instantQuery(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """
    The result of C{expr} now: a list of C{{"metric": labels, "value":
    [time, "value"]}}.
    """
    data = _get(prometheus, "/api/v1/query", query=expr)
    result: list[dict[str, Any]] = data["result"]
    return result


def rangeQuery(
    prometheus: str, expr: str, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    """
    The result of C{expr} over a time range: C{{"metric": labels,
    "values": [[time, "value"], ...]}} per series.
    """
    data = _get(
        prometheus,
        "/api/v1/query_range",
        query=expr,
        start=str(start),
        end=str(end),
        step=str(step),
    )
    result: list[dict[str, Any]] = data["result"]
    return result


def legend(format: str, labels: dict[str, str], fallback: str) -> str:
    """
    A series' name as Grafana writes it from the legend format.
    """
    if not format:
        return fallback
    return LEGEND.sub(lambda m: labels.get(m[1], ""), format)


def _number(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "no data"
    if unit == "s":
        if value >= 86400:
            return f"{value / 86400:.1f} days"
        if value >= 3600:
            return f"{value / 3600:.1f} h"
        if value >= 60:
            return f"{value / 60:.1f} min"
        return f"{value:.3g} s"
    return f"{value:g}"


def draw(prometheus: str, job: str, minutes: float, out: Path) -> None:
    """
    Query every panel over the last C{minutes} and draw the dashboard
    into the PNG file C{out}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    end = time.time()
    start = end - minutes * 60
    step = max(1.0, (end - start) / 240)
    rateInterval = f"{max(4 * int(step), 15)}s"
    # Grafana's grid: 24 columns, rows of 30 px; here a row is a third of
    # an inch, and each panel leaves room for its title and tick labels.
    width, rowHeight, top = 16.0, 1 / 3, 0.6
    height = rows * rowHeight + top
    figure = plt.figure(figsize=(width, height), dpi=90)
    figure.suptitle(
        f"{dashboard['title']} (job {job}, last {minutes:g} min)",
        y=1 - 0.25 / height,
    )
    for panel in panels:
        place = panel["gridPos"]
        timeseries = panel["type"] not in ("stat", "table")
        padLeft = 0.55 if timeseries else 0.1
        padBottom = 0.45 if timeseries else 0.05
        padTop, padRight = 0.3, 0.15
        left = place["x"] / 24 * width + padLeft
        bottom = (rows - place["y"] - place["h"]) * rowHeight + padBottom
        axes = figure.add_axes(
            (
                left / width,
                bottom / height,
                (place["w"] / 24 * width - padLeft - padRight) / width,
                (place["h"] * rowHeight - padBottom - padTop) / height,
            )
        )
        axes.set_title(panel["title"], fontsize=10, loc="left")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        queries = expressions(panel, job, rateInterval)
        if panel["type"] in ("stat", "table"):
            lines = []
            for format, expr in queries:
                for series in instantQuery(prometheus, expr):
                    labels = series["metric"]
                    if panel["type"] == "table":
                        shown = {k: v for k, v in labels.items() if k != "__name__"}
                        lines.extend(f"{k}: {v}" for k, v in shown.items())
                    else:
                        value = _number(float(series["value"][1]), unit)
                        name = legend(format, labels, labels.get("instance", ""))
                        lines.append(f"{value}\n{name}" if name else value)
            axes.axis("off")
            size = 18 if panel["type"] == "stat" and len(lines) <= 2 else 8
            axes.text(
                0.02,
                0.5,
                "\n".join(lines) or "no data",
                fontsize=size,
                va="center",
                wrap=True,
                transform=axes.transAxes,
            )
            continue
        for format, expr in queries:
            for series in rangeQuery(prometheus, expr, start, end, step):
                points = [
                    (float(t) - end, float(v))
                    for t, v in series["values"]
                    if v not in ("NaN", "+Inf", "-Inf")
                ]
                if not points:
                    continue
                name = legend(format, series["metric"], expr.split("{")[0][-40:])
                axes.plot(
                    [t / 60 for t, _ in points],
                    [v for _, v in points],
                    label=name,
                    linewidth=1.2,
                )
        axes.set_xlim(-minutes, 0)
        axes.tick_params(labelsize=7)
        axes.set_xlabel("minutes ago", fontsize=7)
        if unit:
            axes.set_ylabel(unit, fontsize=7)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=6, loc="upper left")
        else:
            axes.text(0.4, 0.5, "no data", transform=axes.transAxes)
    figure.savefig(out)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--job", default=JOB)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("dashboard.png"))
    arguments = parser.parse_args()
    draw(arguments.prometheus, arguments.job, arguments.minutes, arguments.out)
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
