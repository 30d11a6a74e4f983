"""Hand-written SVG plots: grouped bars with spread whiskers, and latency CDFs on a "nines" scale."""

import math
from xml.sax.saxutils import escape

COLORS = {"direct": "#8c8c8c", "sluice": "#e6550d", "nginx": "#31a354", "haproxy": "#3182bd"}
EXTRA = ["#fd8d3c", "#74c476", "#6baed6", "#756bb1", "#e377c2", "#bcbd22"]
FONT = 'font-family="Helvetica,Arial,sans-serif"'


def color_for(name, i):
    base = name.split()[0].lower()
    if name.lower() in COLORS:
        return COLORS[name.lower()]
    if base in COLORS and " " not in name:
        return COLORS[base]
    return EXTRA[i % len(EXTRA)] if base not in COLORS else _shade(COLORS[base], i)


def _shade(hex_color, i):
    r, g, b = (int(hex_color[k:k + 2], 16) for k in (1, 3, 5))
    f = 0.55 + 0.15 * (i % 3)
    return "#%02x%02x%02x" % tuple(int(c + (255 - c) * (1 - f)) for c in (r, g, b))


def _nice_max(v):
    if v <= 0:
        return 1
    mag = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * mag >= v:
            return m * mag
    return 10 * mag


def _fmt(v):
    if v >= 1000:
        return f"{v / 1000:.3g}k"
    return f"{v:.3g}"


def bar_chart(path, title, groups, series, values, unit, note=""):
    """values[(group, series)] = (median, lo, hi) or None. Groups on x, one bar per series."""
    width, height = 900, 420
    left, right, top, bottom = 70, 20, 50, 95
    plot_w, plot_h = width - left - right, height - top - bottom
    vmax = max([v[2] for v in values.values() if v] + [0])
    ymax = _nice_max(vmax * 1.08)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">{escape(title)}</text>']
    for i in range(6):
        v = ymax * i / 5
        y = top + plot_h - plot_h * i / 5
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    out.append(f'<text x="16" y="{top + plot_h / 2}" transform="rotate(-90 16 {top + plot_h / 2})" text-anchor="middle">{escape(unit)}</text>')
    gw = plot_w / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = values.get((g, s))
            if not v:
                continue
            med, lo, hi = v
            x = gx + si * bw
            h = plot_h * med / ymax
            out.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bw * 0.92:.1f}" height="{h:.1f}" fill="{color_for(s, si)}"><title>{escape(s)}: {med:,.2f}</title></rect>')
            cx = x + bw * 0.46
            ylo, yhi = top + plot_h - plot_h * lo / ymax, top + plot_h - plot_h * hi / ymax
            out.append(f'<line x1="{cx:.1f}" y1="{ylo:.1f}" x2="{cx:.1f}" y2="{yhi:.1f}" stroke="black" stroke-width="1"/>')
            out.append(f'<text x="{cx:.1f}" y="{top + plot_h - h - 4:.1f}" text-anchor="middle" font-size="9">{_fmt(med)}</text>')
        label = escape(g)
        out.append(f'<text x="{left + gi * gw + gw / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{label}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="black"/>')
    lx = left
    for si, s in enumerate(series):
        out.append(f'<rect x="{lx}" y="{height - 45}" width="12" height="12" fill="{color_for(s, si)}"/>')
        out.append(f'<text x="{lx + 16}" y="{height - 35}">{escape(s)}</text>')
        lx += 26 + 7 * len(s)
    if note:
        out.append(f'<text x="{left}" y="{height - 12}" font-size="10" fill="#555">{escape(note)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def _nines(q):
    return -math.log10(max(1e-6, 1 - q)) if q < 1 else 5.3


def cdf_chart(path, title, curves, note=""):
    """curves: {name: [(quantile, latency_us), ...]}. x: latency (log), y: percentile (nines)."""
    width, height = 900, 460
    left, right, top, bottom = 80, 20, 50, 90
    plot_w, plot_h = width - left - right, height - top - bottom
    pts = [us for c in curves.values() for _, us in c if us > 0]
    if not pts:
        return
    xmin = 10 ** math.floor(math.log10(max(1.0, min(pts))))
    xmax = 10 ** math.ceil(math.log10(max(pts) * 1.01))
    ymax = 5.3

    def X(us):
        us = max(us, xmin)
        return left + plot_w * (math.log10(us) - math.log10(xmin)) / (math.log10(xmax) - math.log10(xmin))

    def Y(q):
        return top + plot_h - plot_h * _nines(q) / ymax

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">{escape(title)}</text>']
    decade = xmin
    while decade <= xmax * 1.001:
        for m in (1, 2, 5):
            v = decade * m
            if v > xmax * 1.001:
                break
            x = X(v)
            out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="{"#d0d0d0" if m == 1 else "#efefef"}"/>')
            label = f"{v / 1000:g} ms" if v >= 1000 else f"{v:g} µs"
            out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="10">{label}</text>')
        decade *= 10
    for q, label in ((0.5, "50%"), (0.9, "90%"), (0.99, "99%"), (0.999, "99.9%"), (0.9999, "99.99%"),
                     (0.99999, "99.999%"), (1.0, "max")):
        y = Y(q)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 36}" text-anchor="middle">latency from intended send time (log scale)</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" text-anchor="middle">percentile</text>')
    for i, (name, pts_) in enumerate(curves.items()):
        d = " ".join(f"{'M' if j == 0 else 'L'}{X(us):.1f},{Y(q):.1f}" for j, (q, us) in enumerate(pts_))
        out.append(f'<path d="{d}" fill="none" stroke="{color_for(name, i)}" stroke-width="2"><title>{escape(name)}</title></path>')
    lx = left
    for i, name in enumerate(curves):
        out.append(f'<rect x="{lx}" y="{height - 38}" width="12" height="12" fill="{color_for(name, i)}"/>')
        out.append(f'<text x="{lx + 16}" y="{height - 28}">{escape(name)}</text>')
        lx += 30 + 7 * len(name)
    if note:
        out.append(f'<text x="{left}" y="{height - 8}" font-size="10" fill="#555">{escape(note)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
