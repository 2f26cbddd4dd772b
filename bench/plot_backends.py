"""Draws the README's backend figure from ``bench.backends`` output: build time against index
size, and recall@10 of hard queries against the median query time.

    python -m bench.backends --size 100000 > b100k.txt
    python -m bench.backends --size 1000000 --queries 20 --backends lancedb,pgvector > b1m.txt
    python -m bench.plot_backends b100k.txt b1m.txt --out docs/backends.png

Reads the JSON lines ``bench.backends`` prints (one per backend and search setting) from each
file, ignoring everything else.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_rows(paths: list[Path]) -> list[dict]:
    """The JSON rows of ``bench.backends`` output files, in order."""
    rows = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/backends.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(args.logs)
    for r in rows:
        r["name"] = r["backend"].split()[0] + (
            " (FiftyOne's build)" if r.get("build") == "fiftyone" else "")
    names = list(dict.fromkeys(r["name"] for r in rows))
    color = {name: f"C{i}" for i, name in enumerate(names)}
    marker = {size: m for size, m in zip(sorted({r["size"] for r in rows}), "^os")}
    fig, (build, tradeoff) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in names:
        # One build per backend and size (the pgvector rows of one build differ in search).
        built = {r["size"]: r["build_s"] for r in rows if r["name"] == name}
        sizes = sorted(built)
        build.plot(sizes, [built[s] for s in sizes], color=color[name], marker="o", label=name)
    build.set(xscale="log", yscale="log", xlabel="vectors (768-d)", ylabel="build time, s",
              title="Building the index")
    build.legend()
    for r in rows:
        search = [p.split("=")[1] for p in r["backend"].split()
                  if p.startswith("hnsw_ef_search=")]
        tradeoff.scatter(r["p50_ms_hard"], r["recall_hard"], color=color[r["name"]],
                         marker=marker[r["size"]])
        if search:
            tradeoff.annotate(f"ef {search[0]}", (r["p50_ms_hard"], r["recall_hard"]),
                              fontsize=7, xytext=(4, 2), textcoords="offset points")
    for size, m in marker.items():
        tradeoff.scatter([], [], color="grey", marker=m, label=f"{size:,} vectors")
    tradeoff.legend(fontsize=8, loc="center right")
    tradeoff.set(xscale="log", xlabel="median query time, ms (log)",
                 ylabel="recall@10, random queries", ylim=(0, 1.08),
                 title="Recall against query time (colours as left)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
