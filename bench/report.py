"""Turn a benchmark run into a printed summary and docs/benchmarks.md with a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def summary(results: dict[str, Any]) -> str:
    lines = ["", "Summary (ratios from runs taken side by side; above 1 favours the scheduler)"]
    for name, scenario in results.get("http", {}).items():
        for pair, ratio in scenario["ratios"].items():
            lines.append(
                f"  {name:22} {pair:28} rps x{ratio['rps_ratio']:.2f} "
                f"(min {ratio['rps_ratio_min']:.2f}, max {ratio['rps_ratio_max']:.2f}), "
                f"cpu/request x{ratio['cpu_ratio']:.2f}"
            )
    for name, scenario in results.get("workers", {}).items():
        for pair, ratio in scenario["ratios"].items():
            lines.append(f"  {name:22} {pair:28} rps x{ratio['rps_ratio']:.2f}")
    e2e = results.get("e2e")
    if e2e:
        ours = e2e["scheduler"]["jobs_per_s"]
        theirs = e2e["arq"].get("jobs_per_s")
        lines.append(
            f"  end to end             scheduler {ours:.0f} jobs/s, arq "
            + (f"{theirs:.0f} jobs/s, x{e2e['ratio']:.2f}" if theirs else e2e["arq"]["error"])
        )
    for size, row in results.get("fanout", {}).items():
        for kind, values in row.items():
            lines.append(
                f"  fan-out {size:>6} {kind:10} p50 {values['p50_ms']:.0f} ms, "
                f"p99 {values['p99_ms']:.0f} ms, delivered {values['delivered_fraction']:.3f}, "
                f"{values['rss_per_subscriber_kib']:.1f} KiB/subscriber"
            )
    return "\n".join(lines)


def write_docs(results: dict[str, Any], docs: Path) -> None:
    """Write the tables into docs/benchmarks.md between its generated-section markers."""
    docs.mkdir(exist_ok=True)
    chart = docs / "benchmarks.png"
    _chart(results, chart)
    page = docs / "benchmarks.md"
    text = page.read_text() if page.exists() else _TEMPLATE
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    page.write_text(f"{before}{start}\n{tables(results)}\n{end}{after}")


def tables(results: dict[str, Any]) -> str:
    machine = results["machine"]
    workers = results.get("workers", {})
    scenarios = {
        **results.get("http", {}),
        **{f"{key} (2 workers)": value for key, value in workers.items()},
    }
    out = [
        f"Measured on {machine['date']}: {machine['cpu']}, {machine['cores']} cores, "
        f"Python {machine['python']}, load from {machine['load_generator']}. "
        f"Versions: {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}. "
        f"The run took {results['elapsed_s']:.0f} s.",
        "",
        "### Requests",
        "",
        "| scenario | app | requests/s (median, min–max) | server CPU per request (µs) | "
        "load generator CPU per request (µs) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, scenario in scenarios.items():
        for label, row in scenario["summary"].items():
            out.append(
                f"| `{name}` | {label} | {row['rps_median']:.0f} ({row['rps_min']:.0f}–"
                f"{row['rps_max']:.0f}) | {row['cpu_us_median']:.0f} | "
                f"{row['client_cpu_us_median']:.0f} |"
            )
    out += [
        "",
        "| scenario | pair | requests/s ratio (median, min–max) | CPU per request ratio |",
        "| --- | --- | --- | --- |",
    ]
    for name, scenario in scenarios.items():
        for pair, ratio in scenario["ratios"].items():
            out.append(
                f"| `{name}` | {pair} | {ratio['rps_ratio']:.2f} ({ratio['rps_ratio_min']:.2f}–"
                f"{ratio['rps_ratio_max']:.2f}) | {ratio['cpu_ratio']:.2f} |"
            )
    e2e = results.get("e2e")
    if e2e:
        arq = e2e["arq"]
        out += [
            "",
            "### End to end",
            "",
            "| system | jobs | seconds | jobs/s |",
            "| --- | --- | --- | --- |",
            f"| scheduler (HTTP submissions, SQLite) | {e2e['scheduler']['jobs']} | "
            f"{e2e['scheduler']['elapsed_s']:.2f} | {e2e['scheduler']['jobs_per_s']:.0f} |",
            f"| arq (Redis) | {arq.get('jobs', '–')} | {arq.get('elapsed_s', 0):.2f} | "
            f"{arq.get('jobs_per_s', 0):.0f} |",
        ]
    if results.get("fanout"):
        out += [
            "",
            "### Server-sent event fan-out",
            "",
            "| subscribers | app | p50 (ms) | p99 (ms) | delivered | server KiB per subscriber |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for size, row in results["fanout"].items():
            for kind, values in row.items():
                out.append(
                    f"| {size} | {kind} | {values['p50_ms']:.0f} | {values['p99_ms']:.0f} | "
                    f"{values['delivered_fraction']:.3f} | {values['rss_per_subscriber_kib']:.1f} |"
                )
    if results.get("estimates"):
        out += [
            "",
            "### Estimate error",
            "",
            "| task | when | mean absolute error (s) | jobs |",
            "| --- | --- | --- | --- |",
        ]
        for task, points in results["estimates"].items():
            for point, values in points.items():
                out.append(
                    f"| {task} | {point.replace('_', ' ')} | {values['mean_abs_error_s']:.2f} | "
                    f"{values['samples']} |"
                )
    out += ["", "![Requests per second by scenario](benchmarks.png)"]
    return "\n".join(out)


def _chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = results.get("http", {})
    labels = sorted({label for scenario in scenarios.values() for label in scenario["summary"]})
    figure, axis = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(labels), 1)
    for index, label in enumerate(labels):
        values = [
            scenario["summary"].get(label, {}).get("rps_median", 0)
            for scenario in scenarios.values()
        ]
        positions = [spot + index * width for spot in range(len(scenarios))]
        axis.bar(positions, values, width, label=label)
    axis.set_xticks([spot + width * (len(labels) - 1) / 2 for spot in range(len(scenarios))])
    axis.set_xticklabels(list(scenarios), rotation=0, fontsize=8)
    axis.set_ylabel("requests/s (median)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


_TEMPLATE = """# Benchmarks

<!-- results:start -->
<!-- results:end -->
"""
