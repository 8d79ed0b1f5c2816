"""A call's ladder (gateway/ladder.py) drawn in SVG for the call page: one
lifeline per column, one row per step, messages as arrows labelled with the
method and, below, the addresses as they reached the gateway and as they
left it; notes (pinholes, NAT bindings, state) as boxes on their lifeline.
Every text goes through escaping: labels come from the network."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from gateway.ladder import GATEWAY, Ladder

COL = 300          # px between lifelines
ROW = 34           # px per step
LEFT = 110         # the time column
TOP = 56

COLOURS = {"pinhole": "#2e7d32", "nat": "#6a1b9a", "media": "#00838f", "state": "#555"}


def _time(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def render_svg(ladder: Ladder) -> str:
    cols = list(ladder.columns)
    xs = {c: LEFT + COL // 2 + i * COL for i, c in enumerate(cols)}
    width = LEFT + COL * len(cols)
    height = TOP + ROW * (len(ladder.steps) + 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
           'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#1565c0"/>'
           '</marker></defs>']
    for c, x in xs.items():
        label = "gateway (ALG)" if c == GATEWAY else c
        out.append(f'<rect x="{x - 90}" y="8" width="180" height="26" rx="4" fill="#e3f2fd" stroke="#1565c0"/>'
                   f'<text x="{x}" y="26" text-anchor="middle" font-weight="bold">{escape(label)}</text>'
                   f'<line x1="{x}" y1="34" x2="{x}" y2="{height - 8}" stroke="#90a4ae" stroke-dasharray="4 3"/>')
    for i, st in enumerate(ladder.steps):
        y = TOP + ROW * i + ROW // 2
        title = escape(" ".join(filter(None, [f"#{st.seq}", st.label, st.before and f"[{st.before}]",
                                              st.after and f"as [{st.after}]", st.detail])))
        out.append(f'<g class="step {escape(st.kind)}" data-seq="{st.seq}"><title>{title}</title>'
                   f'<text x="6" y="{y + 4}" fill="#555">{escape(_time(st.at))}</text>')
        if st.kind in ("message", "media") and st.src != st.dst and st.src in xs and st.dst in xs:
            x1, x2 = xs[st.src], xs[st.dst]
            mid = (x1 + x2) / 2
            # media flows both ways between the parties: a dashed, two-headed line
            style = ('stroke="#00838f" stroke-dasharray="6 3" marker-start="url(#arrow)" '
                     if st.kind == "media" else 'stroke="#1565c0" ')
            out.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" {style}stroke-width="1.5" '
                       f'marker-end="url(#arrow)"/>'
                       f'<text x="{mid}" y="{y - 4}" text-anchor="middle" fill="#0d47a1">{escape(st.label)}</text>')
            sub = f"in: {st.before}" if st.before else ""
            if st.after and st.after != st.before:
                sub += f"   out: {st.after}"
            if sub:
                out.append(f'<text x="{mid}" y="{y + 12}" text-anchor="middle" fill="#777" '
                           f'font-size="10">{escape(sub)}</text>')
        else:
            x = xs.get(st.src, xs.get(GATEWAY, LEFT))
            text = st.label
            w = min(COL * 2 - 20, 7 * len(text) + 12)
            colour = COLOURS.get(st.kind, "#555")
            out.append(f'<rect x="{x - w / 2}" y="{y - 11}" width="{w}" height="20" rx="3" fill="#fff" '
                       f'stroke="{colour}"/><text x="{x}" y="{y + 4}" text-anchor="middle" '
                       f'fill="{colour}">{escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
