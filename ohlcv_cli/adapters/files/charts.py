"""Pictures of the store: candlesticks with volume (a PNG through matplotlib, a self-contained
interactive HTML through plotly) and coverage timelines. The only module importing either.

Time axes are UTC and real time, so a candle that is not stored is a hole, not a squeezed-out
gap.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.timeframes import DAY_MS, Timeframe
from ohlcv_cli.core.timeutil import iso

KINDS = (".png", ".html")
UP, DOWN = "#26a69a", "#ef5350"
COLORS = {"stored": "#2e7d32", "partial": "#f9a825", "missing": "#c62828",
          "exchange gap": "#9e9e9e"}


def check_target(out: str) -> str:
    path = Path(out)
    kind = path.suffix.lower()
    if kind not in KINDS:
        raise ConfigError(f"cannot draw {out}: the file name must end in .png or .html")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot write {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write {out}: permission denied")
    return kind


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def candles(df, symbol: str, tf: Timeframe, start: int, end: int, out: str,
            funding=None) -> None:
    """df: float frame indexed by UTC open time; `funding`: a float frame of settlements
    indexed by funding time, drawn as the funding rate under the volume."""
    title = f"{symbol} {tf.name}  {iso(start)} → {iso(end)} UTC  ({len(df)} candles)"
    if check_target(out) == ".png":
        _candles_png(df, tf, title, start, end, out, funding)
    else:
        _candles_html(df, tf, title, out, funding)


def _candles_png(df, tf: Timeframe, title: str, start: int, end: int, out: str,
                 funding=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    x = mdates.date2num(df.index.to_pydatetime()) + tf.ms / 2 / DAY_MS  # bar centres
    width = tf.ms / DAY_MS * 0.7
    up = (df["close"] >= df["open"]).to_numpy()
    colors = [UP if u else DOWN for u in up]
    panels = 2 if funding is None else 3
    fig, axes = plt.subplots(panels, 1, sharex=True, figsize=(12, 6.5 + 1.8 * (panels - 2)),
                             dpi=100, gridspec_kw={"height_ratios": [3, 1, 1][:panels],
                                                   "hspace": 0.05})
    ax, axv = axes[0], axes[1]
    ax.vlines(x, df["low"], df["high"], colors=colors, linewidth=0.8)
    bottom = df[["open", "close"]].min(axis=1)
    height = (df["close"] - df["open"]).abs()
    floor = max(float(df["high"].max() - df["low"].min()) / 2000, 1e-12)
    ax.bar(x, height.clip(lower=floor), width, bottom=bottom, color=colors, linewidth=0)
    axv.bar(x, df["volume"], width, color=colors, linewidth=0)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("price")
    axv.set_ylabel("volume")
    ax.grid(alpha=0.25)
    axv.grid(alpha=0.25)
    if funding is not None:  # the funding rate, in percent, a step per settlement
        axf = axes[2]
        fx = mdates.date2num(funding.index.to_pydatetime())
        axf.step(fx, funding["rate"] * 100, where="post", color="#5b6ee1", linewidth=1)
        axf.axhline(0, color="#888888", linewidth=0.5)
        axf.set_ylabel("funding %")
        axf.grid(alpha=0.25)
        axv = axf
    axv.set_xlim(mdates.date2num(_dt(start)), mdates.date2num(_dt(end)))
    locator = mdates.AutoDateLocator(tz=timezone.utc)
    axv.xaxis.set_major_locator(locator)
    axv.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=timezone.utc))
    axv.set_xlabel("time (UTC)")
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


def _candles_html(df, tf: Timeframe, title: str, out: str, funding=None) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    times = [t.strftime("%Y-%m-%d %H:%M:%S") for t in df.index]
    rows = 2 if funding is None else 3
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True,
                        row_heights=[0.75, 0.25] if rows == 2 else [0.6, 0.2, 0.2],
                        vertical_spacing=0.03)
    fig.add_trace(go.Candlestick(
        x=times, open=df["open"].tolist(), high=df["high"].tolist(), low=df["low"].tolist(),
        close=df["close"].tolist(), name="price", increasing_line_color=UP,
        decreasing_line_color=DOWN), row=1, col=1)
    up = (df["close"] >= df["open"]).tolist()
    fig.add_trace(go.Bar(x=times, y=df["volume"].tolist(), name="volume",
                         marker_color=[UP if u else DOWN for u in up]), row=2, col=1)
    if funding is not None:
        fig.add_trace(go.Scatter(
            x=[t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for t in funding.index],
            y=(funding["rate"] * 100).tolist(), name="funding %", line_shape="hv"), row=3, col=1)
    fig.update_layout(title=title, xaxis_rangeslider_visible=False, showlegend=False,
                      template="plotly_white", bargap=0.3)
    fig.update_xaxes(title_text="time (UTC)", row=rows, col=1)
    fig.write_html(out, include_plotlyjs=True, full_html=True)


def series_label(symbol: str, timeframe: str, price: str = "trade") -> str:
    """BTC/USDT 1h; a contract's other price series named: BTC/USDT:USDT mark 1h (the title
    `candles` is given as its symbol, and the coverage rows)."""
    return f"{symbol} {timeframe}" if price == "trade" else f"{symbol} {price} {timeframe}"


def classify(series: dict) -> list[tuple[int, int, str]]:
    """(start, end, kind) segments of one coverage timeline; kind in COLORS."""
    tf_ms, bin_ms, start, end = series["tf_ms"], series["bin_ms"], series["start"], series["end"]
    gaps = series["exchange_gaps"]
    segs: list[list] = []
    t = start
    while t < end:
        b = min(end, t + bin_ms)
        slots = (b - t) // tf_ms
        in_gap = sum(max(0, min(g1, b) - max(g0, t)) // tf_ms for g0, g1 in gaps)
        expected = slots - in_gap
        stored = series["stored"].get(t, 0)
        if expected <= 0:
            kind = "exchange gap"
        elif stored >= expected:
            kind = "stored"
        elif stored == 0:
            kind = "missing"
        else:
            kind = "partial"
        if segs and segs[-1][2] == kind and segs[-1][1] == t:
            segs[-1][1] = b
        else:
            segs.append([t, b, kind])
        t = b
    return [tuple(s) for s in segs]


def coverage(series: list[dict], out: str) -> None:
    if check_target(out) == ".html":
        return _coverage_html(series, out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.45 * len(series)), dpi=100)
    labels = []
    for i, s in enumerate(series):
        labels.append(series_label(s["symbol"], s["timeframe"], s.get("price", "trade")))
        for kind in COLORS:
            spans = [(mdates.date2num(_dt(a)), (b - a) / DAY_MS)
                     for a, b, k in classify(s) if k == kind]
            if spans:
                ax.broken_barh(spans, (i - 0.35, 0.7), facecolors=COLORS[kind], linewidth=0)
    ax.set_yticks(range(len(series)), labels)
    ax.invert_yaxis()
    locator = mdates.AutoDateLocator(tz=timezone.utc)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=timezone.utc))
    ax.set_xlabel("time (UTC)")
    ax.set_title("coverage of the store", fontsize=10)
    ax.grid(axis="x", alpha=0.25)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in COLORS.items()], ncol=4,
              loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(series) < 4 else -0.12),
              frameon=False, fontsize=8)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


def _coverage_html(series: list[dict], out: str) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind, color in COLORS.items():
        ys, bases, widths = [], [], []
        for s in series:
            for a, b, k in classify(s):
                if k == kind:
                    ys.append(series_label(s["symbol"], s["timeframe"],
                                           s.get("price", "trade")))
                    bases.append(_dt(a).strftime("%Y-%m-%d %H:%M:%S"))
                    widths.append(b - a)
        fig.add_trace(go.Bar(y=ys, x=widths, base=bases, orientation="h", name=kind,
                             marker_color=color))
    fig.update_layout(barmode="overlay", template="plotly_white", title="coverage of the store",
                      xaxis={"type": "date", "title": "time (UTC)"})
    fig.write_html(out, include_plotlyjs=True, full_html=True)
