"""Medians across repeats, ratios to `off` (no telemetry) and to `bare`, the targets, and the Markdown table."""

from __future__ import annotations

import statistics

from .peers import PEERS
from .run import ENDPOINTS

METRICS = ("cpu_ms_per_request", "rps", "p50_ms", "p99_ms", "rss_mb")
BASELINES = ("off", "bare")
LABELS = {
    "off": "off (CRUDDUR_TELEMETRY=off)",
    "bare": "bare (no integrations)",
    "otlp": "OpenTelemetry → OTLP",
    "metrics": "OpenTelemetry → OTLP, with request metrics",
    "xray": "X-Ray",
    "xray-otlp": "X-Ray over OTLP (SigV4)",
    "cloudwatch": "CloudWatch Logs",
    "cloudwatch-otlp": "CloudWatch Logs over OTLP (SigV4)",
    "rollbar": "Rollbar",
    "all": "all four",
    "stock": "stock wiring (all four)",
    **{name: peer.label for name, peer in PEERS.items()},
}
# The agents all four is compared with (one vendor each): its CPU overhead over off, over theirs.
OVERHEAD_PEERS = ("ddtrace", "elastic", "sentry-queue", "zero-code")
P99_PEERS = ("ddtrace", "elastic")
# (what, limit): checked on the medians of one interleaved run.
TARGETS = {
    "bare_cpu_x_off": 1.25,
    "all_overhead_share_of_stock": 1.0,
    "all_p99_x_stock": 1.0,
    "metrics_cpu_x_otlp": 1.03,
    "all_overhead_x_ddtrace": 1.0,
    "all_overhead_x_elastic": 1.0,
    "all_overhead_x_sentry-queue": 1.0,
    "all_overhead_x_zero-code": 1.25,
    "all_p99_x_ddtrace": 1.0,
    "all_p99_x_elastic": 1.0,
}
TARGET_LABELS = {
    "bare_cpu_x_off": "bare CPU/request ≤ 1.25x off",
    "all_overhead_share_of_stock": "all four's CPU overhead over off ≤ stock's",
    "all_p99_x_stock": "all four p99 ≤ stock's",
    "metrics_cpu_x_otlp": "request metrics CPU/request ≤ 1.03x the same without",
    "all_overhead_x_ddtrace": "all four's CPU overhead over off ≤ ddtrace's (one vendor)",
    "all_overhead_x_elastic": "all four's CPU overhead over off ≤ Elastic APM's (one vendor)",
    "all_overhead_x_sentry-queue": "all four's CPU overhead over off ≤ Sentry's, queue raised (one vendor)",
    "all_overhead_x_zero-code": "all four's CPU overhead over off ≤ 1.25x zero-code's (stretch 1.0x)",
    "all_p99_x_ddtrace": "all four p99 ≤ ddtrace's",
    "all_p99_x_elastic": "all four p99 ≤ Elastic APM's",
}


def summarize(results: dict) -> dict:
    """{endpoint: {config: {metric: median, metric_x_off, metric_x_bare: ratios, samples, no_loss}}}."""
    by_key: dict[tuple[str, str], list[dict]] = {}
    for sample in results["samples"]:
        by_key.setdefault((sample["endpoint"], sample["config"]), []).append(sample)
    lost = {c["config"] for c in results["checks"] if any(not check["ok"] for check in c["checks"])}
    if "sinks" in lost:  # a count over every server of ours that reports there
        lost |= {s["config"] for s in results["samples"] if s["config"] not in ("off", "bare", "stock", *PEERS)}
    # A peer's cost counts only if its stand-in got its request spans (and SQL spans, where it records them).
    blind = {
        c["config"]
        for c in results["checks"]
        if any(not check["ok"] and check["check"].startswith("instruments:") for check in c["checks"])
    }
    table: dict[str, dict[str, dict]] = {}
    for (endpoint, config), samples in by_key.items():
        row = {metric: statistics.median(s[metric] for s in samples) for metric in METRICS}
        row["samples"] = len(samples)
        row["no_loss"] = config not in lost
        table.setdefault(endpoint, {})[config] = row
    for endpoint, rows in table.items():
        for baseline in BASELINES:
            for config, row in rows.items():
                for metric in METRICS:
                    row[f"{metric}_x_{baseline}"] = _paired_ratio(by_key, endpoint, config, baseline, metric)
        if "off" in rows:
            for config, row in rows.items():
                row["cpu_us_over_off"] = _paired_difference(by_key, endpoint, config, "off", "cpu_ms_per_request")
                row["instruments"] = config not in blind
        if "all" in rows and "off" in rows:  # all four beside each agent, per repeat
            for peer in PEERS:
                if peer in rows and peer not in blind:
                    rows["all"][f"overhead_x_{peer}"] = _paired_overhead_ratio(by_key, endpoint, "all", peer)
                    rows["all"][f"p99_ms_x_{peer}"] = _paired_ratio(by_key, endpoint, "all", peer, "p99_ms")
        if "metrics" in rows and "otlp" in rows:  # the request metrics' own cost: traces with them vs without
            rows["metrics"]["cpu_ms_per_request_x_otlp"] = _paired_ratio(
                by_key, endpoint, "metrics", "otlp", "cpu_ms_per_request"
            )
    return table


def _paired_ratio(by_key: dict, endpoint: str, config: str, baseline: str, metric: str) -> float | None:
    """The median over repeats of `config`'s value over `baseline`'s in the same repeat.

    Each repeat visits every server once in a few seconds, so a burst of noise on this shared machine
    lands on one repeat of both: pairing by repeat cancels it where a ratio of medians would not.
    """
    base = {s["repeat"]: s[metric] for s in by_key.get((endpoint, baseline), ())}
    ratios = [s[metric] / base[s["repeat"]] for s in by_key[(endpoint, config)] if base.get(s["repeat"])]
    return round(statistics.median(ratios), 2) if ratios else None


def _paired_difference(by_key: dict, endpoint: str, config: str, baseline: str, metric: str) -> float | None:
    """The median over repeats of `config`'s value minus `baseline`'s in the same repeat, x1000 (ms → µs)."""
    base = {s["repeat"]: s[metric] for s in by_key.get((endpoint, baseline), ())}
    diffs = [s[metric] - base[s["repeat"]] for s in by_key[(endpoint, config)] if s["repeat"] in base]
    return round(1000 * statistics.median(diffs), 1) if diffs else None


def _paired_overhead_ratio(by_key: dict, endpoint: str, config: str, other: str) -> float | None:
    """The median over repeats of (config - off) / (other - off), CPU per request, within each repeat."""
    off = {s["repeat"]: s["cpu_ms_per_request"] for s in by_key.get((endpoint, "off"), ())}
    theirs = {s["repeat"]: s["cpu_ms_per_request"] for s in by_key.get((endpoint, other), ())}
    ratios = []
    for sample in by_key[(endpoint, config)]:
        repeat = sample["repeat"]
        if repeat in off and repeat in theirs and theirs[repeat] > off[repeat]:
            ratios.append((sample["cpu_ms_per_request"] - off[repeat]) / (theirs[repeat] - off[repeat]))
    return round(statistics.median(ratios), 2) if ratios else None


def targets(table: dict) -> dict:
    """{endpoint: {target: {"value": ..., "limit": ..., "met": bool}}} for the endpoints that have the rows."""
    found = {}
    for endpoint, rows in table.items():
        off, bare, every, stock = (rows.get(c) for c in ("off", "bare", "all", "stock"))
        values = {}
        metrics, otlp = rows.get("metrics"), rows.get("otlp")
        if metrics and otlp and metrics.get("cpu_ms_per_request_x_otlp"):
            values["metrics_cpu_x_otlp"] = metrics["cpu_ms_per_request_x_otlp"]
        if off is None:
            found[endpoint] = _met(values)
            continue
        if every:
            for peer in OVERHEAD_PEERS:
                if f"overhead_x_{peer}" in every:
                    values[f"all_overhead_x_{peer}"] = every[f"overhead_x_{peer}"]
            for peer in P99_PEERS:
                if f"p99_ms_x_{peer}" in every:
                    values[f"all_p99_x_{peer}"] = every[f"p99_ms_x_{peer}"]
        if bare:
            values["bare_cpu_x_off"] = bare["cpu_ms_per_request_x_off"]
        if every and stock:
            stock_p99, all_p99 = stock["p99_ms_x_off"], every["p99_ms_x_off"]
            values["all_p99_x_stock"] = round(all_p99 / stock_p99, 2) if stock_p99 and all_p99 else None
            # Overheads as fractions of off, from the paired ratios: (all/off - 1) / (stock/off - 1).
            stock_x, all_x = stock["cpu_ms_per_request_x_off"], every["cpu_ms_per_request_x_off"]
            share = round((all_x - 1) / (stock_x - 1), 2) if stock_x and all_x and stock_x > 1 else None
            values["all_overhead_share_of_stock"] = share
        found[endpoint] = _met(values)
    return found


def _met(values: dict) -> dict:
    return {
        name: {"value": value, "limit": TARGETS[name], "met": value is not None and value <= TARGETS[name]}
        for name, value in values.items()
    }


def _ratio(value) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def markdown(results: dict, table: dict) -> str:
    """The results as Markdown: one table per endpoint, the targets, then how it was measured."""
    meta = results["meta"]
    lines = []
    for endpoint, rows in table.items():
        method_path = {"home": "GET /api/activities/home", "post": "POST /api/activities"}.get(endpoint, endpoint)
        lines += [
            f"#### {method_path}",
            "",
            "| configuration | CPU ms/request | CPU vs off | CPU vs bare | requests/s | p50 ms | p99 ms | p99 vs off"
            " | p99 vs bare | worker RSS MB | no loss |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
        ]
        for config in [c for c in LABELS if c in rows]:
            row = rows[config]
            lines.append(
                f"| {LABELS[config]} | {row['cpu_ms_per_request']:.3f} | {_ratio(row['cpu_ms_per_request_x_off'])}"
                f" | {_ratio(row['cpu_ms_per_request_x_bare'])} | {row['rps']:.0f} | {row['p50_ms']:.2f}"
                f" | {row['p99_ms']:.2f} | {_ratio(row['p99_ms_x_off'])} | {_ratio(row['p99_ms_x_bare'])}"
                f" | {row['rss_mb']:.1f} | {'yes' if row['no_loss'] else '**NO**'} |"
            )
        lines.append("")
    found = results.get("targets") or targets(table)
    if any(found.values()):
        endpoints = [e for e in table if found.get(e)]
        lines += [
            "| target | " + " | ".join(endpoints) + " |",
            "| --- |" + " ---: |" * len(endpoints),
        ]
        for name, label in TARGET_LABELS.items():
            if not any(name in found[endpoint] for endpoint in endpoints):
                continue
            cells = []
            for endpoint in endpoints:
                entry = found[endpoint].get(name)
                if entry is None or entry["value"] is None:
                    cells.append("-")
                else:
                    value = f"{entry['value']:.2f}" + ("" if name == "all_overhead_share_of_stock" else "x")
                    cells.append(f"{value} {'met' if entry['met'] else '**missed**'}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if any(config in PEERS for rows in table.values() for config in rows):
        lines += peer_markdown(results, table)
    lines.append(
        f"Medians of {meta['repeats']} interleaved repeats; ratios are medians of the per-repeat ratios (each"
        f" repeat's value over the baseline's in the same repeat); {meta['duration_s']:g} s of load per endpoint at "
        f"{meta['connections']} connections ({meta['load_tool']}); one gunicorn sync worker on "
        f"{meta.get('database', 'sqlite')}; CPU is the worker's utime+stime (all its threads, export included; "
        f"not the PostgreSQL server's) per request served. "
        f"Commit {meta['commit']}, Python {meta['python']}, {meta['cpus']} CPUs; {meta['elapsed_s']:.0f} s in all."
    )
    lost = [
        f"- {c['config']}: {check['check']}: expected {check['expected']}, got {check['actual']}"
        for c in results["checks"]
        for check in c["checks"]
        if not check["ok"]
    ]
    if lost:
        lines += ["", "Loss or errors:", *lost]
    return "\n".join(lines) + "\n"


def _per(n: int, d: int) -> str:
    return f"{n / d:.1f}" if d else "-"


def peer_markdown(results: dict, table: dict) -> list[str]:
    """Ours beside the agents: CPU over off, p99, spans a request, delivered/sent per endpoint; what each records."""
    records = results["totals"].get("traces", {})
    lines = []
    for endpoint, rows in table.items():
        method, path, _ = ENDPOINTS[endpoint]
        lines += [
            f"#### Beside the agents: {method} {path}",
            "",
            "| configuration | CPU µs/request | over off | CPU vs off | p99 ms | p99 vs off | spans a request"
            " | SQL spans a request | delivered/sent |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for config in [c for c in LABELS if c in rows]:
            row = rows[config]
            over = row.get("cpu_us_over_off")
            record = records.get(config, {}).get("by_path", {}).get(path)
            if record:
                spans = _per(record["spans"], record["traces"])
                sql = _per(record["sql_spans"], record["traces"])
                delivered = f"{record['traces']:,}/{record['served']:,}"
                if record["served"]:
                    delivered += f" ({100 * record['traces'] / record['served']:.1f} %)"
            else:
                spans = sql = delivered = "-"
            label = LABELS[config] + ("" if row.get("instruments", True) else " (**does not instrument**)")
            lines.append(
                f"| {label} | {1000 * row['cpu_ms_per_request']:.0f} | {'-' if over is None else f'{over:+.0f}'}"
                f" | {_ratio(row['cpu_ms_per_request_x_off'])} | {row['p99_ms']:.2f} | {_ratio(row['p99_ms_x_off'])}"
                f" | {spans} | {sql} | {delivered} |"
            )
        lines.append("")
    lines += ["What each records (span names; the fields of a home request's span and of its first SQL span):", ""]
    home = ENDPOINTS["home"][1]
    for config, record in records.items():
        example = record.get("examples", {}).get(home, {})
        names = ", ".join(f"{name} x{n}" for name, n in list(record.get("span_names", {}).items())[:8])
        lines.append(f"- {LABELS.get(config, config)}: {names}")
        for kind in ("request", "sql"):
            if example.get(kind):
                lines.append(f"  - {kind}: {', '.join(_keys(example[kind]))}")
        if "delivered_by_exit" in record:
            lines.append(
                f"  - delivered {record['delivered']:,} of {record['served']:,} while serving,"
                f" {record['delivered_by_exit']:,} by the worker's exit; the SDK's own client reports,"
                f" discarded: {record['discarded'] or 'nothing'}"
            )
    lines.append("")
    return lines


def _keys(value: dict, prefix: str = "", depth: int = 0) -> list[str]:
    """Dotted field names of a decoded span (values left out), two levels deep."""
    keys = []
    for key, inner in sorted(value.items()):
        name = f"{prefix}{key}"
        if isinstance(inner, dict) and inner and depth < 1:
            keys += _keys(inner, f"{name}.", depth + 1)
        else:
            keys.append(name)
    return keys
