"""Medians across repeats, ratios to bare, and the Markdown table."""

from __future__ import annotations

import statistics

METRICS = ("cpu_ms_per_request", "rps", "p50_ms", "p99_ms", "rss_mb")
LABELS = {
    "bare": "bare (no integrations)",
    "otlp": "OpenTelemetry → OTLP",
    "xray": "X-Ray",
    "cloudwatch": "CloudWatch Logs",
    "rollbar": "Rollbar",
    "all": "all four",
}


def summarize(results: dict) -> dict:
    """{endpoint: {config: {metric: median, metric_x_bare: ratio, samples: n, no_loss: bool}}}."""
    by_key: dict[tuple[str, str], list[dict]] = {}
    for sample in results["samples"]:
        by_key.setdefault((sample["endpoint"], sample["config"]), []).append(sample)
    lost = {c["config"] for c in results["checks"] if any(not check["ok"] for check in c["checks"])}
    if "sinks" in lost:  # a count over every server that reports there
        lost |= {sample["config"] for sample in results["samples"] if sample["config"] != "bare"}
    table: dict[str, dict[str, dict]] = {}
    for (endpoint, config), samples in by_key.items():
        row = {metric: statistics.median(s[metric] for s in samples) for metric in METRICS}
        row["samples"] = len(samples)
        row["no_loss"] = config not in lost
        table.setdefault(endpoint, {})[config] = row
    for rows in table.values():
        bare = rows.get("bare")
        for row in rows.values():
            for metric in METRICS:
                base = bare[metric] if bare else 0
                row[f"{metric}_x_bare"] = round(row[metric] / base, 2) if base else None
    return table


def _ratio(value) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def markdown(results: dict, table: dict) -> str:
    """The results as Markdown: one table per endpoint, then how it was measured."""
    meta = results["meta"]
    lines = []
    for endpoint, rows in table.items():
        method_path = {"home": "GET /api/activities/home", "post": "POST /api/activities"}.get(endpoint, endpoint)
        lines += [
            f"#### {method_path}",
            "",
            "| configuration | CPU ms/request | CPU vs bare | requests/s | p50 ms | p99 ms | p99 vs bare"
            " | worker RSS MB | no loss |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
        ]
        for config in [c for c in LABELS if c in rows]:
            row = rows[config]
            lines.append(
                f"| {LABELS[config]} | {row['cpu_ms_per_request']:.3f} | {_ratio(row['cpu_ms_per_request_x_bare'])}"
                f" | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {_ratio(row['p99_ms_x_bare'])}"
                f" | {row['rss_mb']:.1f} | {'yes' if row['no_loss'] else '**NO**'} |"
            )
        lines.append("")
    lines.append(
        f"Medians of {meta['repeats']} interleaved repeats; {meta['duration_s']:g} s of load per endpoint at "
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
