#!/usr/bin/env python3
"""Markdown or LaTeX table (ours vs published) from a `lra reproduce` CSV.

usage: make_table.py REPRODUCE.csv [--table NAME] [--metric METRIC] [--format markdown|latex]
                     [--out FILE]

Rows and columns keep the order of the CSV; ours is the mean over seeds (± sample sd
when there are several), theirs the published number. Accuracy tables get an average
column over the columns where both are present.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lra_csv import die, read_csv  # noqa: E402

REPRODUCE_COLUMNS = ["table", "kind", "row", "column", "seed", "metric", "ours", "theirs", "status"]


def cell_text(values, digits):
    if not values:
        return None
    mean = sum(values) / len(values)
    text = f"{mean:.{digits}f}"
    if len(values) > 1:
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        text += f" ± {var ** 0.5:.{digits}f}"
    return text, mean


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--table", help="table name (default: every table in the CSV)")
    parser.add_argument("--metric", help="metric (default: every metric of the table)")
    parser.add_argument("--format", choices=["markdown", "latex"], default="markdown")
    parser.add_argument("--out", help="write here instead of stdout")
    args = parser.parse_args()
    frame = read_csv(args.csv, REPRODUCE_COLUMNS, "reproduce",
                     text=("table", "row", "column", "metric", "status", "params"))
    if args.table:
        if args.table not in set(frame["table"]):
            die(f"{args.csv}: no rows for table '{args.table}' (has: {', '.join(sorted(set(frame['table'])))})")
        frame = frame[frame["table"] == args.table]
    lines = []
    for (table, metric), part in frame.groupby(["table", "metric"], sort=False):
        if args.metric and metric != args.metric:
            continue
        rows = list(dict.fromkeys(part["row"]))
        cols = list(dict.fromkeys(part["column"]))
        accuracy = metric == "test_accuracy"
        digits = 2 if metric != "memory_mb" else 0
        header = ["model"] + cols + (["avg"] if accuracy else [])
        body = []
        for r in rows:
            cells, ours_sum, theirs_sum, count = [], 0.0, 0.0, 0
            for c in cols:
                sel = part[(part["row"] == r) & (part["column"] == c)]
                values = [float(v) for v in sel["ours"] if v == v and v != ""]
                theirs = [float(v) for v in sel["theirs"] if v == v and v != ""]
                got = cell_text(values, digits)
                ours_text = got[0] if got else (sel["status"].iloc[0] if len(sel) else "—")
                theirs_text = f"{theirs[0]:g}" if theirs else "—"
                cells.append(f"{ours_text} / {theirs_text}")
                if got and theirs:
                    ours_sum += got[1]
                    theirs_sum += theirs[0]
                    count += 1
            if accuracy:
                cells.append(f"{ours_sum / count:.2f} / {theirs_sum / count:.2f}" if count else "—")
            body.append([r] + cells)
        caption = f"{table}: {metric} (ours / published)"
        if args.format == "markdown":
            lines.append(f"\n**{caption}**\n")
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|---|" + "---:|" * (len(header) - 1))
            lines += ["| " + " | ".join(b) + " |" for b in body]
        else:
            esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$")  # noqa: E731
            lines.append(r"\begin{table}[t]\centering")
            lines.append(r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}")
            lines.append(r"\toprule")
            lines.append(" & ".join(esc(h) for h in header) + r" \\")
            lines.append(r"\midrule")
            lines += [" & ".join(esc(x) for x in b) + r" \\" for b in body]
            lines.append(r"\bottomrule")
            lines.append(r"\end{tabular}")
            lines.append(r"\caption{" + esc(caption) + "}")
            lines.append(r"\end{table}")
    if not lines:
        die(f"{args.csv}: nothing to tabulate (table/metric filter matched no rows)")
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(args.out, file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
