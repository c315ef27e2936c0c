#!/usr/bin/env python3
"""Time and memory vs sequence length (log-log), one line per backend, from `lra sweep` CSVs.

usage: plot_scaling.py SWEEP.csv [SWEEP2.csv ...] [--anchors ANCHOR.csv ...] [--out DIR]
                       [--summary] [--reference softmax]

Writes DIR/scaling_time.png and DIR/scaling_memory.png (one panel per pass). Anchor CSVs
in the /work/shared/anchors format (backend, batch, heads, head_dim, seq_len, pass,
time_ms_median, peak_extra_bytes, status) are overlaid as dashed lines, only for the
shapes (batch, heads, head_dim) the sweep measured. --summary prints a Markdown table of
time and memory per backend at each N, with ratios to the --reference backend.
"""
import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lra_csv import die, ensure_dir, label, read_csv  # noqa: E402

SWEEP_COLUMNS = ["backend", "params", "device", "dtype", "batch", "heads", "seq_len", "head_dim",
                 "pass", "time_ms_median", "time_ms_p10", "time_ms_p90", "peak_bytes", "status"]
ANCHOR_COLUMNS = ["backend", "batch", "heads", "head_dim", "seq_len", "pass", "time_ms_median",
                  "peak_extra_bytes", "status"]


def fmt_bytes(b):
    if b != b:  # NaN
        return "—"
    if b >= 1024 ** 3:
        return f"{b / 1024 ** 3:.2f} GiB"
    return f"{b / 1024 ** 2:.1f} MiB"


def summary(frame, reference):
    ok = frame[frame["status"].isin(["ok", "slow"])]
    for (device, batch, heads, head_dim, pas), part in frame.groupby(
            ["device", "batch", "heads", "head_dim", "pass"], sort=False):
        seqs = sorted(part["seq_len"].unique())
        print(f"\n**{pas}, {device}, B={batch}, H={heads}, D={head_dim}** — median time "
              f"and peak memory beyond the inputs; (×a time, ×b mem) = {reference} ÷ this backend "
              f"(above 1: this backend is faster / smaller)\n")
        print("| backend | " + " | ".join(f"N={n}" for n in seqs) + " |")
        print("|---|" + "---:|" * len(seqs))
        sel = ok[(ok["device"] == device) & (ok["batch"] == batch) & (ok["heads"] == heads)
                 & (ok["head_dim"] == head_dim) & (ok["pass"] == pas)]
        ref = sel[sel["backend"] == reference].groupby("seq_len").first()
        for (backend, params), rows in part.groupby(["backend", "params"], sort=False):
            cells = []
            for n in seqs:
                row = rows[rows["seq_len"] == n]
                if row.empty:
                    cells.append("")
                    continue
                row = row.iloc[0]
                if row["status"] not in ("ok", "slow"):
                    cells.append(str(row["status"]))
                    continue
                t, m = float(row["time_ms_median"]), float(row["peak_bytes"])
                text = f"{t:.1f} ms, {fmt_bytes(m)}"
                if backend != reference and n in ref.index:
                    rt, rm = float(ref.loc[n, "time_ms_median"]), float(ref.loc[n, "peak_bytes"])
                    if t > 0 and m > 0:
                        text += f" (×{rt / t:.1f} time, ×{rm / m:.1f} mem)"
                cells.append(text)
            print(f"| {label(backend, params)} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", help="lra sweep CSV(s)")
    parser.add_argument("--anchors", nargs="*", default=[], help="anchor CSV(s) to overlay")
    parser.add_argument("--out", default=".", help="output folder (default: .)")
    parser.add_argument("--summary", action="store_true", help="print a Markdown summary")
    parser.add_argument("--reference", default="softmax", help="backend for the ratios")
    args = parser.parse_args()

    frame = pd.concat([read_csv(p, SWEEP_COLUMNS, "sweep") for p in args.csv], ignore_index=True)
    anchors = pd.concat([read_csv(p, ANCHOR_COLUMNS, "anchor") for p in args.anchors],
                        ignore_index=True) if args.anchors else None
    ok = frame[frame["status"].isin(["ok", "slow"])].copy()
    if ok.empty:
        die(f"{', '.join(args.csv)}: no measured point (status ok/slow) to plot")
    shapes = set(map(tuple, ok[["batch", "heads", "head_dim"]].drop_duplicates().values.tolist()))
    if anchors is not None:
        keep = anchors.apply(lambda r: (r["batch"], r["heads"], r["head_dim"]) in shapes, axis=1)
        if not keep.any():
            print("warning: no anchor row has a (batch, heads, head_dim) the sweep measured; "
                  "anchors not drawn", file=sys.stderr)
        anchors = anchors[keep & (anchors["status"] == "ok")]

    ensure_dir(args.out)
    passes = [p for p in ["fwd", "fwd+bwd"] if p in set(ok["pass"])]
    devices = sorted(set(ok["device"]))
    written = []
    for metric, anchor_metric, ylabel, name, scale in [
            ("time_ms_median", "time_ms_median", "time per call (ms, median)", "scaling_time.png", 1.0),
            ("peak_bytes", "peak_extra_bytes", "peak memory beyond inputs (MiB)", "scaling_memory.png",
             1.0 / 1024 ** 2)]:
        fig, axes = plt.subplots(1, len(passes), figsize=(6.5 * len(passes), 5), squeeze=False)
        for ax, pas in zip(axes[0], passes):
            part = ok[ok["pass"] == pas]
            for (backend, params, device, batch, heads, head_dim), rows in part.groupby(
                    ["backend", "params", "device", "batch", "heads", "head_dim"], sort=False):
                rows = rows.sort_values("seq_len")
                y = rows[metric].astype(float) * scale
                lab = label(backend, params)
                if len(devices) > 1 or len(shapes) > 1:
                    lab += f" [{device} B{batch} H{heads} D{head_dim}]"
                line, = ax.plot(rows["seq_len"], y, marker="o", label=lab)
                if metric == "time_ms_median":
                    ax.fill_between(rows["seq_len"], rows["time_ms_p10"].astype(float),
                                    rows["time_ms_p90"].astype(float), color=line.get_color(), alpha=0.15)
            if anchors is not None and not anchors.empty:
                for backend, rows in anchors[anchors["pass"] == pas].groupby("backend", sort=False):
                    rows = rows.sort_values("seq_len")
                    ax.plot(rows["seq_len"], rows[anchor_metric].astype(float) * scale, linestyle="--",
                            marker="x", alpha=0.7, label=f"anchor: {backend}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            seqs = sorted(set(part["seq_len"]))
            ax.set_xticks(seqs)
            ax.set_xticklabels([str(n) for n in seqs], fontsize=8)
            ax.set_xlabel("sequence length N")
            ax.set_ylabel(ylabel)
            shape_text = ", ".join(f"B={b} H={h} D={d}" for b, h, d in sorted(shapes))
            ax.set_title(f"{pas} — {', '.join(devices)}, {shape_text}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(args.out, name)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if args.summary:
        summary(frame, args.reference)
    for path in written:
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
