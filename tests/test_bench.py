"""`steward bench` end to end on a few runs: its own dev server, worker and API. No timing asserts."""

from __future__ import annotations

import math

from steward.cli.bench import _round_sizes, format_report, percentile, run_benchmark


async def test_bench_completes_every_run_on_both_paths_and_reports_figures() -> None:
    report = await run_benchmark(runs=3, concurrency=2, warmup=1)

    for path in (report.raw, report.api):
        assert path.failures == [], path.failures
        assert path.completed == 3
        assert path.latency_ms(50) > 0 and path.latency_ms(90) >= path.latency_ms(50)
        assert path.throughput > 0
        assert all(sample.to_close_s is not None and sample.to_close_s > 0 for sample in path.samples)
    assert all(sample.polls >= 1 for sample in report.api.samples)
    assert not math.isnan(report.throughput_ratio) and not math.isnan(report.p50_ratio)
    table = format_report(report)
    assert "API / raw throughput" in table and "API p50 / raw p50" in table


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == 4.6
    assert math.isnan(percentile([], 50))


def test_runs_are_split_into_rounds_without_losing_any() -> None:
    assert _round_sizes(200) == [50, 50, 50, 50]
    assert _round_sizes(7) == [2, 2, 2, 1]
    assert _round_sizes(3) == [1, 1, 1]
