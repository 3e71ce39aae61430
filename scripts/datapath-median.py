#!/usr/bin/env python3
"""Cell-wise median of several `bench --datapath` tables (docs/datapath.md).

Usage: scripts/datapath-median.py RUN1.txt RUN2.txt RUN3.txt

Every numeric cell of the measurement table and of the ratio tables (the
bare chain's included) is the median of that cell over the runs: each
ratio stays a ratio of figures of one run, as the benchmark computes it.
Profile tables (--profile) are left out: they come from one run each. A
ratio table's verdict (`cni6`, or `bare` for the bare chain's section) is
recomputed from the median cells.
"""
import re
import statistics
import sys

NUM = re.compile(r"^-?\d+(\.\d+)?$")
# Chain labels of the measurement table, longest first: "cni6 bare" has a space.
CHAINS = ("cni6 bare", "reference", "cni6")
HEADER = ("# data path", "# machine", "# bridge-nf", "# cni6 bare:", "# load")


def parse(path):
    """Sections of one run: header lines, then (section title, rows), each
    row (label, [cells]) with the label the text before the first number."""
    header, sections, title = [], [], None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("# profile"):
            break
        if line.startswith(HEADER):
            header.append(line)
            continue
        if line.startswith("#") or line.startswith("path "):
            title = line
            sections.append((title, []))
            continue
        words = line.split()
        first = next((i for i, w in enumerate(words) if NUM.match(w) or w == "-"), None)
        if first is None or not sections:
            continue
        label = " ".join(words[:first])
        sections[-1][1].append((label, words[first:]))
    return header, sections


def main(paths):
    runs = [parse(p) for p in paths]
    for line in runs[0][0]:
        if not line.startswith("# load"):
            print(line)
    for h in runs:
        for line in h[0]:
            if line.startswith("# load"):
                print(line)
    print(f"# cell-wise median of {len(runs)} runs")
    base = runs[0][1]
    for s, (title, rows) in enumerate(base):
        print(title)
        for r, (label, cells) in enumerate(rows):
            out = []
            for c, cell in enumerate(cells):
                vals = [run[1][s][1][r][1][c] for run in runs]
                if all(NUM.match(v) for v in vals):
                    places = len(cell.split(".")[1]) if "." in cell else 0
                    out.append(f"{statistics.median(float(v) for v in vals):.{places}f}")
                else:
                    out.append(cell)
            # A target ("<= 1.20") and the verdict for the section's first
            # two figures follow the figures; recompute it from the medians.
            op = next((i for i, x in enumerate(out) if x in (">=", "<=")), None)
            if op is not None and len(out) > op + 2:
                bound = float(out[op + 1])
                mine = [float(x) for x in out[:2]]
                ok = all(v >= bound for v in mine) if out[op] == ">=" else all(v <= bound for v in mine)
                out[op + 2] = "met" if ok else "missed"
                out[op:op + 2] = [f"{out[op]} {out[op + 1]}"]
            if title.startswith("path"):
                chain = next(c for c in CHAINS if label.endswith(" " + c))
                path = label[: -len(chain) - 1]
                widths = [10, 10, 10, 10, 9, 9, 9]
                print(f"{path:<22} {chain:<9}" + "".join(f"{x:>{w}}" for x, w in zip(out, widths)))
            else:
                print(f"{label:<44}" + "".join(f"{x:>9}" for x in out))


if __name__ == "__main__":
    main(sys.argv[1:])
