#!/usr/bin/env python3
"""Approximation error vs landmarks / features / samples, from `lra approx` CSVs.

usage: plot_approx.py APPROX.csv [...] [--out DIR] [--summary]

Writes DIR/approx_error.png: one panel per sequence length, x = the backend's size
parameter (nystrom landmarks, linformer k, performer features, skeinformer samples),
y = relative Frobenius error of the output against exact softmax (median over seeds,
band = min..max). Backends without a size parameter are drawn as horizontal lines.
--summary prints the medians as a Markdown table.
"""
import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lra_csv import die, ensure_dir, read_csv  # noqa: E402

APPROX_COLUMNS = ["backend", "params", "device", "dtype", "batch", "heads", "seq_len", "head_dim",
                  "seed", "error_rel_fro"]
SIZE_KEYS = ["landmarks", "k", "features", "samples"]


def split_params(params):
    out = {}
    for item in filter(None, str(params).split(";")):
        key, _, value = item.partition("=")
        out[key] = value
    return out


def size_and_rest(params):
    """('landmarks', 64, 'conv_kernel=0') from 'conv_kernel=0;landmarks=64'."""
    parts = split_params(params)
    for key in SIZE_KEYS:
        if key in parts:
            try:
                size = float(parts.pop(key))
            except ValueError:
                continue
            rest = ";".join(f"{k}={v}" for k, v in sorted(parts.items()))
            return key, size, rest
    return None, None, ";".join(f"{k}={v}" for k, v in sorted(parts.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", help="lra approx CSV(s)")
    parser.add_argument("--out", default=".", help="output folder (default: .)")
    parser.add_argument("--summary", action="store_true", help="print a Markdown summary")
    args = parser.parse_args()
    frame = pd.concat([read_csv(p, APPROX_COLUMNS, "approx") for p in args.csv], ignore_index=True)
    frame = frame[pd.to_numeric(frame["error_rel_fro"], errors="coerce").notna()].copy()
    if frame.empty:
        die(f"{', '.join(args.csv)}: no row with a numeric error_rel_fro")
    frame["error_rel_fro"] = frame["error_rel_fro"].astype(float)
    info = frame["params"].map(size_and_rest)
    frame["size_key"] = info.map(lambda t: t[0])
    frame["size"] = info.map(lambda t: t[1])
    frame["rest"] = info.map(lambda t: t[2])
    frame = frame[frame["backend"] != "softmax"]

    seqs = sorted(frame["seq_len"].unique())
    ensure_dir(args.out)
    fig, axes = plt.subplots(1, len(seqs), figsize=(5 * len(seqs), 4.5), squeeze=False, sharey=True)
    colors = {}
    for ax, n in zip(axes[0], seqs):
        part = frame[frame["seq_len"] == n]
        for (backend, key, rest), rows in part.groupby(
                ["backend", part["size_key"].fillna(""), "rest"], sort=False):
            name = backend + (f" ({rest.replace(';', ', ')})" if rest else "")
            color = colors.setdefault(name, f"C{len(colors) % 10}")
            if key:
                stats = rows.groupby("size")["error_rel_fro"].agg(["median", "min", "max"]).sort_index()
                ax.plot(stats.index, stats["median"], marker="o", color=color, label=f"{name} vs {key}")
                ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.15)
            else:
                ax.axhline(rows["error_rel_fro"].median(), color=color, linestyle="--", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sizes = sorted(set(part["size"].dropna()))
        if sizes:
            ax.set_xticks(sizes)
            ax.set_xticklabels([f"{s:g}" for s in sizes], fontsize=8)
        ax.set_xlabel("landmarks / k / features / samples")
        ax.set_title(f"N = {n}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("‖out − softmax‖_F / ‖softmax‖_F")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(args.out, "approx_error.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    if args.summary:
        table = frame.groupby(["backend", "params", "seq_len"])["error_rel_fro"].median().unstack("seq_len")
        print("\n**Relative Frobenius error of the output vs exact softmax** (median over seeds)\n")
        print("| backend | params | " + " | ".join(f"N={n}" for n in table.columns) + " |")
        print("|---|---|" + "---:|" * len(table.columns))
        for (backend, params), row in table.iterrows():
            print(f"| {backend} | {params} | " + " | ".join(
                "—" if v != v else f"{v:.3g}" for v in row.values) + " |")
    print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
