"""PNG plots of the scale lab's time series (matplotlib, the ``bench`` extra): kernel
entries over time, RSS over time and CPU (share of a core) per VTEP, with the phases
marked. Without matplotlib the plots are skipped with a message."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.scale")


def write_plots(out: Path, series: dict[str, Any], phases: list[tuple[str, float]]) -> list[str]:
    """``series``: per VTEP ``entries`` [[t, n]], ``resources`` [[t, rss, cpu_s]], times
    in seconds since the run's start. Returns the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install '.[bench]'): no plots")
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def figure(title: str, ylabel: str) -> Any:
        fig, ax = plt.subplots(figsize=(11, 5.5))
        ax.set_title(title)
        ax.set_xlabel("seconds since the VTEPs started")
        ax.set_ylabel(ylabel)
        for name, at in phases:
            ax.axvline(at, color="grey", linewidth=0.6, linestyle=":")
            ax.text(at, 1.0, f" {name}", rotation=90, va="top", fontsize=7,
                    transform=ax.get_xaxis_transform())  # fmt: skip
        return fig, ax

    def style(name: str) -> dict[str, Any]:
        return (
            {"linestyle": "--", "linewidth": 2.0} if name.startswith("frr") else {"linewidth": 1.0}
        )

    def save(fig: Any, ax: Any, name: str) -> None:
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))

    fig, ax = figure("kernel entries per VTEP (flood entries + remote MACs)", "entries")
    for name, data in series.items():
        if data["entries"]:
            times = [e[0] for e in data["entries"]]
            counts = [e[1] for e in data["entries"]]
            ax.step(times, counts, where="post", label=name, **style(name))
    save(fig, ax, "entries.png")

    fig, ax = figure("RSS per VTEP (agent: ExaBGP + core; FRR: bgpd + zebra)", "MiB")
    for name, data in series.items():
        if data["resources"]:
            ax.plot([r[0] for r in data["resources"]], [r[1] for r in data["resources"]],
                    label=name, **style(name))  # fmt: skip
    save(fig, ax, "rss.png")

    fig, ax = figure("CPU per VTEP (same processes), share of one core", "cores")
    for name, data in series.items():
        rows = data["resources"]
        xs: list[float] = []
        ys: list[float] = []
        for (t0, _r0, c0), (t1, _r1, c1) in itertools.pairwise(rows):
            if t1 > t0:
                xs.append(t1)
                ys.append(max(0.0, (c1 - c0) / (t1 - t0)))  # a restart resets the counter
        if xs:
            ax.plot(xs, ys, label=name, **style(name))
    save(fig, ax, "cpu.png")
    return written
