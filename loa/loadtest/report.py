"""Load test reports: a summary table for people, JSON for machines, and a self-contained HTML
page with the latency CDF and histogram drawn as inline SVG (nothing to fetch to view it).

Each leads with the verdict: FAILURE when any endpoint heard a stall or got less than 99 % of
real time (`loa.loadtest.timeline`), whatever the sequence numbers say.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from loa.core.percentiles import weighted_percentile
from loa.loadtest.client import LATENCY_BIN_NS
from loa.loadtest.timeline import Verdict


def summary_table(report: dict[str, Any]) -> str:
    lat = report["latency_ms"]
    st = report["startup_ms"]
    verdict = report.get("verdict")
    rows: list[tuple[str, str]] = []
    if verdict is not None:
        rows += [
            ("verdict", verdict + "".join(f"; {why}" for why in report["verdict_reasons"])),
            ("stalls", (f"{report['stalls']:,} in {report['endpoints_with_stalls']:,} endpoint(s)"
                        f" (audio > {report['stall_threshold_ms']} ms behind real time)")),
            ("longest silence p50/p99/max", _fmt(report["longest_silence_ms"],
                                                 ("p50", "p99", "max"), "ms")),
            ("delivered min/p50", _fmt(report["delivered_pct"], ("min", "p50"), "% of real time",
                                       digits=2)),
        ]
        if report.get("endpoints_not_judged"):
            rows.append(("not judged", (f"{report['endpoints_not_judged']} endpoint(s) the test"
                                        " cut or stalled on purpose")))
    rows += [
        ("endpoints", f"{report['endpoints']} ({report['protocol']}, {report['procs']} processes)"),
        ("duration", f"{report['duration_s']:.1f} s"),
        ("packets", f"{report['packets']:,}"),
        ("lost (gaps)", f"{report['gaps']:,} ({report['loss_pct']:.4f} %)"),
        ("duplicates", f"{report['duplicates']:,}"),
        ("latency p50/p90/p99/max", _fmt4(lat, "ms")),
        ("startup p50/p90/p99/max", _fmt4(st, "ms")),
        ("reconnects", f"{report['reconnects']:,}"),
        ("errors", ", ".join(f"{k} ×{v}" for k, v in report["errors"].items()) or "none"),
        ("generator CPU", f"{report['generator_cpu_pct']:.1f} % of one core"),
    ]
    srv = report.get("server")
    if srv:
        rows.append(("server CPU", f"{srv['cpu_pct']:.1f} % of one core, "
                                   f"{srv['cpu_ms_per_endpoint_second']:.3f} ms per "
                                   "endpoint-second"))
        rows.append(("server RSS", f"{srv['rss_mb']:.1f} MB"))
    for sc in report.get("scenarios", []):
        rows.append((f"scenario {sc['name']}", sc["summary"]))
    width = max(len(k) for k, _ in rows)
    table = "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
    if verdict == Verdict.FAILURE.value:  # impossible to miss at the end of a terminal
        table += "\n\n  *** FAILURE: endpoints heard dead air: " \
                 + "; ".join(report["verdict_reasons"]) + " ***"
    elif verdict is not None:
        table += "\n\n  PASS: no stall, every endpoint got real time"
    return table


def _fmt4(d: dict[str, Any], unit: str) -> str:
    return _fmt(d, ("p50", "p90", "p99", "max"), unit)


def _fmt(d: dict[str, Any], keys: Sequence[str], unit: str, digits: int = 1) -> str:
    vals = [d.get(k) for k in keys]
    return " / ".join("–" if v is None else f"{v:.{digits}f}" for v in vals) + f" {unit}"


def write_json(report: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)


# --- HTML with inline SVG ---

_W, _H, _PAD = 680, 300, 64


def _svg_frame(title: str, xlabel: str, ylabel: str, x_max: float, y_max: float,
               body: str) -> str:
    ticks = []
    for i in range(6):
        x = _PAD + i * (_W - 2 * _PAD) / 5
        ticks.append(f'<line x1="{x:.1f}" y1="{_H - _PAD}" x2="{x:.1f}" y2="{_H - _PAD + 4}" '
                     f'stroke="#333"/><text x="{x:.1f}" y="{_H - _PAD + 16}" font-size="11" '
                     f'text-anchor="middle">{_num(x_max * i / 5)}</text>')
        y = _H - _PAD - i * (_H - 2 * _PAD) / 5
        ticks.append(f'<text x="{_PAD - 6}" y="{y + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{_num(y_max * i / 5)}</text>'
                     f'<line x1="{_PAD}" y1="{y:.1f}" x2="{_W - _PAD}" y2="{y:.1f}" '
                     'stroke="#eee"/>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif">'
        f'<text x="{_W / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>'
        + "".join(ticks)
        + f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#333"/>'
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#333"/>'
        f'<text x="{_W / 2}" y="{_H - 10}" text-anchor="middle" font-size="12">'
        f"{html.escape(xlabel)}</text>"
        f'<text x="14" y="{_H / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {_H / 2})">{html.escape(ylabel)}</text>'
        + body + "</svg>"
    )


def _num(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _sx(x: float, x_max: float) -> float:
    return _PAD + (x / x_max if x_max else 0) * (_W - 2 * _PAD)


def _sy(y: float, y_max: float) -> float:
    return _H - _PAD - (y / y_max if y_max else 0) * (_H - 2 * _PAD)


def svg_cdf(values_ms: np.ndarray, weights: np.ndarray, title: str, xlabel: str) -> str:
    """CDF of (value, weight) pairs, x clipped at the 99.9th percentile for readability."""
    if weights.sum() == 0:
        return f"<p>{html.escape(title)}: no samples</p>"
    order = np.argsort(values_ms)
    v, w = values_ms[order], np.cumsum(weights[order]) / weights.sum()
    x_max = weighted_percentile(v, weights[order], 99.9) or 1.0
    pts = " ".join(f"{_sx(min(x, x_max), x_max):.1f},{_sy(y, 1):.1f}"
                   for x, y in zip(v, w, strict=True))
    body = f'<polyline fill="none" stroke="#1565c0" stroke-width="2" points="{pts}"/>'
    return _svg_frame(title, xlabel, "fraction of packets", x_max, 1.0, body)


def svg_histogram(values_ms: np.ndarray, weights: np.ndarray, title: str, xlabel: str,
                  bins: int = 60) -> str:
    if weights.sum() == 0:
        return f"<p>{html.escape(title)}: no samples</p>"
    order = np.argsort(values_ms)
    x_max = weighted_percentile(values_ms[order], weights[order], 99.9) or 1.0
    counts, edges = np.histogram(np.minimum(values_ms, x_max), bins=bins, range=(0, x_max),
                                 weights=weights)
    y_max = float(counts.max()) or 1.0
    bw = (_W - 2 * _PAD) / bins
    rects = "".join(
        f'<rect x="{_sx(edges[i], x_max):.1f}" y="{_sy(c, y_max):.1f}" width="{bw - 1:.1f}" '
        f'height="{_H - _PAD - _sy(c, y_max):.1f}" fill="#42a5f5"/>'
        for i, c in enumerate(counts)
    )
    return _svg_frame(title, xlabel, "packets", x_max, y_max, rects)


def svg_timeline(timeline: list[dict[str, Any]], key: str, title: str) -> str:
    if not timeline:
        return ""
    xs = np.array([t["t"] for t in timeline], dtype=float)
    ys = np.array([t[key] for t in timeline], dtype=float)
    x_max, y_max = float(xs.max()) or 1.0, float(ys.max()) or 1.0
    pts = " ".join(f"{_sx(x, x_max):.1f},{_sy(y, y_max):.1f}" for x, y in zip(xs, ys, strict=True))
    body = f'<polyline fill="none" stroke="#2e7d32" stroke-width="2" points="{pts}"/>'
    return _svg_frame(title, "seconds", key, x_max, y_max, body)


def _verdict_html(report: dict[str, Any]) -> str:
    """The verdict as a banner: red FAILURE with its reasons, or green PASS."""
    verdict = report.get("verdict")
    if verdict is None:
        return ""
    if verdict == Verdict.FAILURE.value:
        title = "THẤT BẠI — loa bị mất tiếng / FAILURE — endpoints heard dead air"
    else:
        title = "ĐẠT / PASS — không ngắt quãng / no stall"
    reasons = "".join(f"<li>{html.escape(why)}</li>" for why in report["verdict_reasons"])
    return (f'<div class="verdict {html.escape(verdict)}" id="verdict"><strong>'
            f"{html.escape(title)}</strong>" + (f"<ul>{reasons}</ul>" if reasons else "")
            + "</div>")


def write_html(report: dict[str, Any], path: str) -> None:
    counts = np.zeros(max((int(k) for k in report["latency_histogram"]), default=0) + 1)
    for k, v in report["latency_histogram"].items():
        counts[int(k)] = v
    nz = np.nonzero(counts)[0]
    values = (nz + 1) * LATENCY_BIN_NS / 1e6
    weights = counts[nz]
    startup = np.asarray(report.get("startup_samples_ms", []), dtype=float)
    silences = np.asarray(report.get("longest_silence_samples_ms", []), dtype=float)
    hidden = ("latency_histogram", "startup_samples_ms", "timeline", "longest_silence_samples_ms")
    parts = [
        "<!doctype html><html lang=vi><meta charset=utf-8>",
        "<title>Loa — báo cáo thử tải / load test report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:760px}"
        "pre{background:#f5f5f5;padding:1em}"
        ".verdict{padding:1em;font-size:1.3em;color:#fff}"
        ".FAILURE{background:#b71c1c}.PASS{background:#2e7d32}</style>",
        "<h1>Loa — báo cáo thử tải</h1><p>Load test report</p>",
        _verdict_html(report),
        f"<pre>{html.escape(summary_table(report))}</pre>",
        svg_cdf(values, weights, "Độ trễ / latency CDF", "ms, capture → receive"),
        svg_histogram(values, weights, "Độ trễ / latency histogram", "ms"),
        svg_cdf(startup, np.ones_like(startup), "Khởi động / startup delay CDF",
                "ms, connect → first audio"),
        svg_cdf(silences, np.ones_like(silences),
                "Khoảng lặng dài nhất / longest silence per endpoint, CDF",
                "ms, the longest wait between two packets"),
        svg_timeline(report.get("timeline", []), "streaming", "Đang nhận / endpoints streaming"),
        "<h2>JSON</h2>",
        "<pre>" + html.escape(json.dumps({k: v for k, v in report.items() if k not in hidden},
                                         indent=2, ensure_ascii=False)) + "</pre>",
        "</html>",
    ]
    with open(path, "w") as f:
        f.write("\n".join(parts))


# --- `loa bench`: every figure beside its reference ---

def bench_summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures of issue 17's table from a ``loa bench`` run (``loa.loadtest.bench``'s
    results: its ``fanout``, ``idle`` and ``transcode`` parts, whichever ran), each Loa's beside
    its reference measured in the same run.

    A row: ``key`` (stable, for machines), ``figure``, ``unit``, ``reference`` (what Loa is
    compared with), ``reference_value``, ``loa`` and ``ratio_loa_to_reference`` (less is better
    in every row: below 1, Loa is ahead). A figure missing on either side gives no row.
    """
    rows: list[dict[str, Any]] = []

    def row(key: str, figure: str, unit: str, reference: str, ref: float | None,
            loa: float | None) -> None:
        if ref is None or loa is None:
            return
        rows.append({"key": key, "figure": figure, "unit": unit, "reference": reference,
                     "reference_value": ref, "loa": loa,
                     "ratio_loa_to_reference": round(loa / ref, 3) if ref else None})

    fanout = results.get("fanout") or []
    by = {(f["server"], f["listeners"]): f for f in fanout}
    counts = sorted({f["listeners"] for f in fanout})
    for n in counts:
        loa, ice = by.get(("loa", n)), by.get(("icecast", n))
        if loa and ice:
            row(f"cpu_ms_per_listener_second_{n}",
                f"CPU per listener-second, {n} listeners (fixed costs included)", "ms",
                "Icecast 2, default burst", ice["cpu_ms_per_listener_second"],
                loa["cpu_ms_per_listener_second"])
    for n in counts:
        loa, ice0 = by.get(("loa", n)), by.get(("icecast-burst0", n))
        if loa and ice0:
            row(f"heard_delay_p50_ms_{n}", f"heard delay p50, {n} listeners", "ms",
                "Icecast 2, burst 0 (pass-through)", ice0["heard_delay_ms"].get("p50"),
                loa["heard_delay_ms"].get("p50"))
        loa0 = by.get(("loa-burst0", n))
        if loa0 and ice0:  # like for like: neither sends a joining listener a burst
            row(f"heard_delay_p50_ms_{n}_burst0", f"heard delay p50, {n} listeners, Loa burst 0",
                "ms", "Icecast 2, burst 0 (pass-through)", ice0["heard_delay_ms"].get("p50"),
                loa0["heard_delay_ms"].get("p50"))
    idle = results.get("idle") or {}
    if "icecast" in idle and "loa" in idle:
        ice, loa = idle["icecast"], idle["loa"]
        row("idle_cpu_pct", "idle server CPU, one live programme", "% of one core",
            "Icecast 2", ice["cpu_pct"], loa["cpu_pct"])
        row("idle_rss_mb", "RSS at idle", "MB", "Icecast 2", ice["rss_mb"], loa["rss_mb"])
    tc = results.get("transcode")
    if tc:
        row("transcode_cpu_s", f"transcode {tc['audio_s']:g} s of 128 kb/s MP3 to 32 kb/s Opus",
            "s CPU", "ffmpeg CLI", tc["ffmpeg_cpu_s"], tc["loa_cpu_s"])
    return rows


def format_bench_summary(rows: list[dict[str, Any]]) -> list[str]:
    """``bench_summary``'s rows as a Markdown table."""
    lines = ["Summary, measured in this run: Loa / reference (less is better; below 1, Loa "
             "is ahead)", "", "| figure | reference | Loa | Loa / reference |",
             "|---|---|---|---|"]
    for r in rows:
        ratio = r["ratio_loa_to_reference"]
        lines.append(f"| {r['figure']} | {r['reference']}: {_num3(r['reference_value'])} "
                     f"{r['unit']} | {_num3(r['loa'])} {r['unit']} | "
                     + ("–" if ratio is None else f"{ratio:.2f}") + " |")
    return lines


def _num3(v: float) -> str:
    """Three significant figures (more left of the point), thousands separated: 0.270, 2.00,
    63.2, 151, 10,489."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:#.3g}".rstrip(".")
