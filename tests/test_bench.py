"""`steward bench` end to end on a few runs (a Steward of its own, three paths), and what the report
bench renders. No timing asserts."""

from __future__ import annotations

import io
import math
import os

import pytest
from pypdf import PdfReader

from activities.reports.fonts import prepared_fonts
from steward.cli import report_bench

from steward.cli.bench import (
    BenchSetupError,
    format_report,
    percentile,
    process_tree,
    round_sizes,
    rss_mib,
    run_benchmark,
)


async def test_bench_runs_the_real_workflow_three_ways_on_two_workers_and_reports_every_figure() -> None:
    environment = dict(os.environ)

    report = await run_benchmark("compliance-documentation", runs=4, concurrency=2, latency_runs=2, warmup=1,
                                 workers=2)

    for phase, runs in ((report.latency, 2), (report.throughput, 4)):
        assert set(phase) == {"api", "raw", "bare"}
        for path in phase.values():
            assert path.failures == [], path.failures
            assert path.completed == runs
            assert 0 < path.latency_ms(50) <= path.latency_ms(90)
            assert path.cpu_ms_per_run("worker") > 0
    assert all(report.throughput[p].throughput > 0 for p in ("api", "raw", "bare"))
    assert report.memory and all(m.rss_mib["worker"] > 0 and m.rss_mib["api"] > 0 for m in report.memory)
    assert report.retries.histories == 3 * (2 + 4)  # every measured run's history was read
    assert len(report.retries.workers_seen) == 2  # both workers took workflow tasks from the queue
    assert not math.isnan(report.ratio("throughput", "api", "bare"))
    assert dict(os.environ) == environment  # its own Steward's settings went to its children only
    table = format_report(report)
    for line in ("api / raw throughput at 2", "api / raw p50", "api / bare throughput at 2", "api / bare p50",
                 "resident memory", "2 workers with", "every worker took part"):
        assert line in table


async def test_bench_refuses_a_workflow_without_a_sample_input() -> None:
    with pytest.raises(BenchSetupError, match="no workflow named 'no-such-workflow'"):
        await run_benchmark("no-such-workflow", runs=1, concurrency=1, latency_runs=1, warmup=0)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == 4.6
    assert math.isnan(percentile([], 50))


def test_runs_are_split_into_rounds_without_losing_any() -> None:
    assert round_sizes(200) == [50, 50, 50, 50]
    assert round_sizes(7) == [2, 2, 2, 1]
    assert round_sizes(3) == [1, 1, 1]


def test_process_figures_come_from_proc_for_a_process_and_its_children() -> None:
    assert process_tree(os.getpid())[0] == os.getpid()
    assert rss_mib([os.getpid()]) > 1


def test_the_report_bench_measures_real_reports_of_both_workflows(settings) -> None:
    fonts = prepared_fonts(settings.font_cache_dir)
    measured = report_bench.cases()

    assert {artifact for _, _, artifact, _ in measured} == {"compliance-report.pdf", "postmortem.pdf"}
    for label, _, _, render in measured:
        reader = PdfReader(io.BytesIO(render(fonts)))
        assert reader.pages, label
        text = reader.pages[0].extract_text()
        assert "Postmortem" in text if "postmortem" in label else "Compliance" in text, label
