#!/usr/bin/env python3
"""Plots of the many-hosts experiments (Cluster/netns-experiments.sh): reads shards.json, trainer.json and
reshard.json from DIR (whichever exist), writes shards.svg, trainer.svg, reshard.svg there and prints the
README tables. Plain SVG, standard library only.

    python3 Cluster/plot-netns.py DIR
"""
import json
import os
import sys

RATE_BITS = {"1gbit": 1e9, "100mbit": 1e8}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def link_bound(rate, shards, dim, op):
    """Rows/s the shards' links carry: link bytes/s over the payload bytes of one row in the busy direction
    (pull: the row's floats to the client; push: the gradient's floats plus the 8-byte id to the shard)."""
    row_bytes = dim * 4 + (8 if op.startswith("push") else 0)
    return RATE_BITS[rate] / 8 * shards / row_bytes


class Chart:
    """A line / bar chart on a linear scale with axes, ticks, a legend and a title."""

    def __init__(self, title, xlabel, ylabel, width=720, height=420):
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = 80, 200, 40, 50
        self.items = []

    def px(self, x, y, xr, yr):
        pw, ph = self.w - self.left - self.right, self.h - self.top - self.bottom
        return (self.left + (x - xr[0]) / (xr[1] - xr[0]) * pw, self.top + ph - (y - yr[0]) / (yr[1] - yr[0]) * ph)

    def svg(self, xr, yr, xticks, yticks, body, legend):
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" font-family="sans-serif" font-size="12">',
               f'<rect width="{self.w}" height="{self.h}" fill="white"/>',
               f'<text x="{self.w / 2}" y="20" text-anchor="middle" font-size="14">{self.title}</text>']
        x0, y0 = self.px(xr[0], yr[0], xr, yr)
        x1, y1 = self.px(xr[1], yr[1], xr, yr)
        out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>')
        for v, label in xticks:
            x, _ = self.px(v, yr[0], xr, yr)
            out.append(f'<line x1="{x}" y1="{y0}" x2="{x}" y2="{y0 + 4}" stroke="black"/><text x="{x}" y="{y0 + 18}" text-anchor="middle">{label}</text>')
        for v in yticks:
            _, y = self.px(xr[0], v, xr, yr)
            out.append(f'<line x1="{x0 - 4}" y1="{y}" x2="{x1}" y2="{y}" stroke="#ddd"/><text x="{x0 - 8}" y="{y + 4}" text-anchor="end">{fmt(v)}</text>')
        out.append(f'<text x="{(x0 + x1) / 2}" y="{self.h - 10}" text-anchor="middle">{self.xlabel}</text>')
        out.append(f'<text x="16" y="{(y0 + y1) / 2}" text-anchor="middle" transform="rotate(-90 16 {(y0 + y1) / 2})">{self.ylabel}</text>')
        out += body
        for i, (label, color, dashed) in enumerate(legend):
            y = self.top + 10 + i * 18
            x = self.w - self.right + 15
            dash = ' stroke-dasharray="5,4"' if dashed else ""
            out.append(f'<line x1="{x}" y1="{y}" x2="{x + 24}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/><text x="{x + 30}" y="{y + 4}">{label}</text>')
        out.append("</svg>")
        return "\n".join(out)


def fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def nice_ticks(top, n=5):
    step = 10 ** len(str(int(top / n))) / 10
    for m in (1, 2, 2.5, 5, 10):
        if top / (step * m) <= n:
            step *= m
            break
    return [i * step for i in range(int(top / step) + 2)]


def plot_shards(d, runs):
    chart = Chart("Aggregate throughput, each shard behind its own capped link", "shards", "rows/s (uniform ids, dim 64)")
    xs = sorted({r["shards"] for r in runs})
    xr = (0.5, max(xs) + 0.5)
    series, rows = [], []
    for rate in ("1gbit", "100mbit"):
        for op in ("pull", "push-sgd"):
            pts = []
            for r in sorted((r for r in runs if r["rate"] == rate), key=lambda r: r["shards"]):
                m = [x for x in r["bench"]["results"] if x["system"] == "embedps" and x["op"] == op]
                if m:
                    pts.append((r["shards"], m[0]["rowsPerSecond"], link_bound(rate, r["shards"], r["dim"], op), r["clients"]))
            if pts:
                series.append((f"{op} @ {rate}", pts))
                rows += [(rate, op, s, v, b, c) for s, v, b, c in pts]
    top = max(max(v, b) for _, pts in series for _, v, b, _ in pts) * 1.05
    yt = nice_ticks(top)
    yr = (0, yt[-1])
    body, legend = [], []
    for i, (label, pts) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        line = " ".join("%.1f,%.1f" % chart.px(s, v, xr, yr) for s, v, _, _ in pts)
        bound = " ".join("%.1f,%.1f" % chart.px(s, b, xr, yr) for s, _, b, _ in pts)
        body.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
        body.append(f'<polyline points="{bound}" fill="none" stroke="{color}" stroke-width="1" stroke-dasharray="5,4"/>')
        for s, v, _, _ in pts:
            x, y = chart.px(s, v, xr, yr)
            body.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>')
        legend += [(label, color, False), (f"link bound", color, True)]
    with open(os.path.join(d, "shards.svg"), "w") as f:
        f.write(chart.svg(xr, yr, [(x, str(x)) for x in xs], yt[:-1] + [yt[-1]], body, legend))
    print("| link | op | shards | clients | rows/s | link bound rows/s | of bound |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for rate, op, s, v, b, c in rows:
        print(f"| {rate} | {op} | {s} | {c} | {v / 1e3:,.0f} k | {b / 1e3:,.0f} k | {v / b:.2f}x |")


def plot_trainer(d, runs):
    main = [r for r in runs if r["seed"] == 1]
    chart = Chart("Trainer on goodbooks (20 epochs, 1 Gbit links)", "layout (shards x workers)", "seconds per epoch")
    n = len(main)
    xr = (0, n)
    per_epoch = [r["report"]["seconds"] / r["report"]["epochs"] for r in main]
    yt = nice_ticks(max(per_epoch) * 1.15)
    yr = (0, yt[-1])
    body = []
    for i, (r, v) in enumerate(zip(main, per_epoch)):
        x0, y0 = chart.px(i + 0.2, 0, xr, yr)
        x1, y1 = chart.px(i + 0.8, v, xr, yr)
        color = COLORS[0] if r["shards"] == 2 else COLORS[1]
        body.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="{color}"/>')
        recall = test_recall(r["report"])
        body.append(f'<text x="{(x0 + x1) / 2}" y="{y1 - 4}" text-anchor="middle" font-size="10">R@20 {recall:.4f}</text>')
    ticks = [(i + 0.5, f'{r["shards"]}x{r["workers"]}') for i, r in enumerate(main)]
    with open(os.path.join(d, "trainer.svg"), "w") as f:
        f.write(chart.svg(xr, yr, ticks, yt, body, [("2 shards", COLORS[0], False), ("4 shards", COLORS[1], False)]))
    print("| shards | workers | seed | s / epoch | rows moved / s | test Recall@20 | tail Recall@20 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        rep = r["report"]
        m = [x for x in rep["test"] if x["model"].startswith("mf-bpr")][0]
        # Three rows (user, item, sampled negative) pulled and pushed per training interaction, over the
        # run's wall time (evaluation included): an approximation of the rows the PS moved.
        rows_per_s = rep["trainInteractions"] * rep["epochs"] * 3 * 2 / rep["seconds"]
        print(f'| {r["shards"]} | {r["workers"]} | {r["seed"]} | {rep["seconds"] / rep["epochs"]:.2f} | {rows_per_s / 1e3:,.0f} k | {m["recallAt20"]:.4f} | {m["tailRecallAt20"]:.4f} |')


def test_recall(rep):
    return [x for x in rep["test"] if x["model"].startswith("mf-bpr")][0]["recallAt20"]


def plot_reshard(d, res):
    s = res["series"]
    chart = Chart("Live resharding 2 -> 4 shards under push load (100 Mbit links)", "seconds since the load started", "push rows/s (2 s windows)")
    xr = (0, max(p["t"] for p in s) + 2)
    yt = nice_ticks(max(p["rowsPerSecond"] for p in s) * 1.1)
    yr = (0, yt[-1])
    x0, _ = chart.px(res["reshardStart"], 0, xr, yr)
    x1, _ = chart.px(res["reshardEnd"], 0, xr, yr)
    _, ytop = chart.px(0, yr[1], xr, yr)
    _, ybot = chart.px(0, 0, xr, yr)
    body = [f'<rect x="{x0}" y="{ytop}" width="{x1 - x0}" height="{ybot - ytop}" fill="#eee"/>',
            f'<text x="{(x0 + x1) / 2}" y="{ytop + 14}" text-anchor="middle">moving {res["reshard"]["slotsMoved"]} slots</text>']
    line = " ".join("%.1f,%.1f" % chart.px(p["t"], p["rowsPerSecond"], xr, yr) for p in s)
    body.append(f'<polyline points="{line}" fill="none" stroke="{COLORS[0]}" stroke-width="2"/>')
    step = 10 if xr[1] < 120 else 20
    with open(os.path.join(d, "reshard.svg"), "w") as f:
        f.write(chart.svg(xr, yr, [(t, str(t)) for t in range(0, int(xr[1]) + 1, step)], yt, body, [("push rows/s", COLORS[0], False)]))
    before = [p["rowsPerSecond"] for p in s if p["t"] <= res["reshardStart"]]
    during = [p["rowsPerSecond"] for p in s if res["reshardStart"] < p["t"] <= res["reshardEnd"] + 2]
    after = [p["rowsPerSecond"] for p in s if p["t"] > res["reshardEnd"] + 2]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
    r = res["reshard"]
    print("| rows moved | slots | map versions | time to move | push rows/s before | during | after |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f'| {r["rowsMoved"]:,} | {r["slotsMoved"]} | {r["fromVersion"]} -> {r["toVersion"]} | {r["seconds"]:.1f} s | {mean(before) / 1e3:,.0f} k | {mean(during) / 1e3:,.1f} k | {mean(after) / 1e3:,.0f} k |')


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "Cluster/results/netns"
    for name, plot in (("shards", plot_shards), ("trainer", plot_trainer), ("reshard", plot_reshard)):
        p = os.path.join(d, name + ".json")
        if os.path.exists(p):
            print(f"\n{name}:")
            with open(p) as f:
                plot(d, json.load(f))


if __name__ == "__main__":
    main()
