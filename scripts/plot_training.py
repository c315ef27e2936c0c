#!/usr/bin/env python3
"""Training curves (loss and accuracy vs step) from the metrics.csv of `lra train` runs.

usage: plot_training.py RUN [RUN ...] [--out DIR] [--name training.png] [--summary]

RUN is a run folder (holding metrics.csv) or a metrics.csv path, optionally LABEL=PATH.
Writes DIR/NAME with loss and accuracy panels, one line per run and split. --summary
prints the best validation accuracy of each run as a Markdown table.
"""
import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lra_csv import ensure_dir, read_csv  # noqa: E402

METRICS_COLUMNS = ["step", "split", "loss", "accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folder or metrics.csv (LABEL=PATH allowed)")
    parser.add_argument("--out", default=".", help="output folder (default: .)")
    parser.add_argument("--name", default="training.png", help="output file name")
    parser.add_argument("--summary", action="store_true", help="print a Markdown summary")
    args = parser.parse_args()

    runs = []
    for item in args.runs:
        lab, sep, path = item.partition("=")
        if not sep:
            lab, path = None, item
        csv = os.path.join(path, "metrics.csv") if os.path.isdir(path) else path
        if lab is None:
            lab = os.path.basename(os.path.dirname(os.path.abspath(csv))) or csv
        frame = read_csv(csv, METRICS_COLUMNS, "training metrics")
        runs.append((lab, frame))

    ensure_dir(args.out)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (lab, frame) in enumerate(runs):
        for split, rows in frame.groupby("split", sort=False):
            rows = rows.sort_values("step")
            style = "-" if split in ("val", "eval") else (":" if split == "train" else "--")
            ax_loss.plot(rows["step"], rows["loss"].astype(float), style, color=f"C{i % 10}",
                         marker="." if len(rows) < 50 else None, label=f"{lab} {split}")
            ax_acc.plot(rows["step"], rows["accuracy"].astype(float), style, color=f"C{i % 10}",
                        marker="." if len(rows) < 50 else None, label=f"{lab} {split}")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(args.out, args.name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    if args.summary:
        print("\n| run | steps | best val accuracy (step) | last val loss |")
        print("|---|---:|---:|---:|")
        for lab, frame in runs:
            val = frame[frame["split"].isin(["val", "eval"])]
            if val.empty:
                print(f"| {lab} | {int(frame['step'].max())} | — | — |")
                continue
            best = val.loc[val["accuracy"].astype(float).idxmax()]
            last = val.sort_values("step").iloc[-1]
            acc = float(best["accuracy"])
            acc_text = f"{acc * 100:.2f}%" if acc <= 1.0 else f"{acc:.2f}%"
            print(f"| {lab} | {int(frame['step'].max())} | {acc_text} ({int(best['step'])}) | "
                  f"{float(last['loss']):.4f} |")
    print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
