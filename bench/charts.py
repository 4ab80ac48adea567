"""Charts of one bench/run.py run: requests/s, server CPU per request and p99 latency for
every workload, one bar per server, as an SVG a README can show.

    python bench/charts.py bench/results/results.jsonl --commit abc1234 -o bench/latest.svg

bench/run.py calls `write` at the end of a run; this command redraws a recorded run from
results.jsonl (the latest commit's rows unless --commit says which). matplotlib comes
with the bench extra (pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PANELS = (("rps", "requests/s (higher is better)", "{:,.0f}"),
          ("cpu_us", "server CPU µs per request (lower is better)", "{:.0f}"),
          ("p99_ms", "p99 latency, ms, log scale (lower is better)", "{:.1f}"))
# One colour per server, the same in every chart; prefork first and strongest.
COLOURS = {"prefork": "#1f5fa8", "prefork-python": "#7aa7d9", "prefork-baseline": "#9db8d6",
           "prefork-metrics": "#4f86c6", "granian": "#d98c1f", "bjoern": "#5a9e4b",
           "gunicorn": "#8c8c8c", "waitress": "#b07aa1", "fastpysgi": "#c44e52",
           "pyruvate": "#937860", "uwsgi": "#64b5cd"}


def medians(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """(label, server) -> the median of each figure over the run's rounds; the label is
    the workload, with "(close)" for a new connection per request."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        label = row["workload"] + (" (close)" if row["mode"] == "close" else "")
        grouped.setdefault((label, row["server"]), []).append(row)
    return {key: {k: statistics.median(r[k] for r in rs) for k, _, _ in PANELS}
            for key, rs in grouped.items()}


def write(rows: Sequence[dict[str, Any]], out: Path, title: str) -> Path:
    """Draw the run's medians (rows as in results.jsonl) into `out` (SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = medians(rows)
    labels = list(dict.fromkeys(label for label, _ in figures))
    servers = list(dict.fromkeys(server for _, server in figures))
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(11, 3.2 * len(PANELS)),
                             constrained_layout=True)
    width = 0.8 / max(1, len(servers))
    for ax, (key, unit, fmt) in zip(axes, PANELS, strict=True):
        for i, server in enumerate(servers):
            xs = [n + (i - (len(servers) - 1) / 2) * width for n in range(len(labels))]
            ys = [figures.get((label, server), {}).get(key, float("nan")) for label in labels]
            if key == "p99_ms":  # wrk reports 0 where it timed no request: not a figure
                ys = [y if y > 0 else float("nan") for y in ys]
            bars = ax.bar(xs, ys, width, label=server, color=COLOURS.get(server))
            if key == "rps":
                ax.bar_label(bars, labels=[fmt.format(y) if y == y else "" for y in ys],
                             fontsize=6, rotation=90, padding=2)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel(unit.split(" (")[0])
        ax.set_title(unit, fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if key == "rps":
            ax.margins(y=0.18)
        if key == "p99_ms":  # a slow outlier (an app sleeping in a single thread) would
            ax.set_yscale("log")  # flatten the rest
    handles, names = axes[0].get_legend_handles_labels()
    legend = fig.legend(handles, names, loc="outside upper center", ncols=len(servers),
                        fontsize=9, frameon=False, title=title, title_fontsize=9)
    legend.get_title().set_color("#555")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="svg", metadata={"Date": None})  # no timestamp: stable diffs
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results.jsonl written by bench/run.py")
    parser.add_argument("--commit", help="the run's commit (default: the last row's)")
    parser.add_argument("-o", "--out", type=Path, default=Path("bench/latest.svg"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line]
    commit = args.commit or rows[-1]["commit"]
    date = max(r["date"] for r in rows if r["commit"] == commit)
    run = [r for r in rows if r["commit"] == commit and r["date"][:10] == date[:10]]
    first = run[0]
    title = (f"commit {commit}, {date[:10]}: {first['machine']}; wrk -c{first['connections']}, "
             f"medians of rounds")
    print(write(run, args.out, title))


if __name__ == "__main__":
    main()
