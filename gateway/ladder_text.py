"""A call's ladder drawn in text (:func:`render_text`): one lifeline per
column, one row per step."""

from __future__ import annotations

from gateway.ladder_types import GATEWAY, Ladder

WIDTH = 34          # characters between two columns


def render_text(ladder: Ladder, *, clock=None) -> str:
    """The ladder drawn in text: one lifeline per column, one row per step
    (a message as an arrow, a note at its column), the time on the left.
    ``clock(at) -> str`` formats a time (default: seconds since the call's
    first record)."""
    t0 = ladder.steps[0].at if ladder.steps else 0.0
    fmt = clock or (lambda at: f"+{at - t0:9.3f}s")
    ncol = len(ladder.columns)
    xs = [i * WIDTH + WIDTH // 2 for i in range(ncol)]
    width = ncol * WIDTH
    pad = max([len(fmt(st.at)) for st in ladder.steps] + [len(fmt(t0))]) + 2

    def blank() -> list[str]:
        row = [" "] * width
        for x in xs:
            row[x] = "|"
        return row

    lines = [f"{ladder.protocol.upper()} call {ladder.call}"
             + (f" (also {', '.join(i for i in ladder.ids if i != ladder.call)})"
                if len(ladder.ids) > 1 else "")]
    for p, q in ladder.nat:
        lines.append(f"  NAT {p} = {q}")
    head = [" "] * width
    for x, name in zip(xs, ladder.columns):
        name = name[:WIDTH - 2]
        s = max(0, x - len(name) // 2)
        head[s:s + len(name)] = name
    lines.append(" " * pad + "".join(head).rstrip())
    lines.append(" " * pad + "".join(blank()).rstrip())
    col = {c: i for i, c in enumerate(ladder.columns)}
    for st in ladder.steps:
        row = blank()
        if st.kind in ("message", "media") and st.src != st.dst:
            a, b = xs[col[st.src]], xs[col[st.dst]]
            lo, hi = min(a, b), max(a, b)
            for x in range(lo + 1, hi):
                row[x] = "-" if st.kind == "message" else "="
            if st.kind == "media":             # media flows both ways
                row[lo + 1], row[hi - 1] = "<", ">"
            elif b > a:
                row[hi - 1] = ">"
            else:
                row[lo + 1] = "<"
            label = f" {st.label} "[:hi - lo - 3]
            s = lo + 1 + max(1, (hi - lo - len(label)) // 2)
            row[s:s + len(label)] = label
            text = "".join(row).rstrip()
            extra = []
            if st.before:
                extra.append(st.before)
            if st.after and st.after != st.before:
                extra.append(f"as {st.after}")
            if st.kind == "media" and st.detail:
                extra.append(st.detail)
            lines.append(f"{fmt(st.at):<{pad}}{text}" + (f"   {' / '.join(extra)}" if extra else ""))
        else:
            x = xs[col.get(st.src, col.get(GATEWAY, 0))]
            note = f"[{st.label}]"
            s = max(0, min(x - 1, width - len(note)))
            row[s:s + len(note)] = note
            text = "".join(row).rstrip()
            lines.append(f"{fmt(st.at):<{pad}}{text}" + (f"   {st.detail}" if st.detail else ""))
    if ladder.ended_at is not None:
        lines.append(f"ended: {ladder.end_reason}")
    return "\n".join(lines) + "\n"
