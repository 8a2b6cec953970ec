"""The daily LLM spend cap per tenant: past it, steps go to a person instead of the model."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from activities.llm.service import LlmService, configure, utc_today
from activities.llm.spend import SPEND_DB_FILE, SqliteSpendLedger
from steward.settings import Settings
from tests.fake_openai import FakeOpenAI, answer, serve_fake_openai
from tests.test_compliance_workflow import APPROVER, start, waiting_for_approval
from tests.test_llm_endpoint import REQUEST, VALID, endpoint_settings
from tests.support import wait_for_run

CAP_USD = 0.01
# 20k tokens in and out at gpt-4o-mini's test prices: $0.015, past the cap in one call.
EXPENSIVE = {"input_tokens": 20_000, "output_tokens": 20_000}
CALL_COST_USD = (20_000 * 0.15 + 20_000 * 0.6) / 1_000_000


class Today:
    def __init__(self) -> None:
        self.day = date(2026, 3, 14)

    def __call__(self) -> date:
        return self.day


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with serve_fake_openai() as fake:
        yield fake


def capped_service(fake: FakeOpenAI, data_dir: Path, today: Today, cap: float | None = CAP_USD) -> LlmService:
    """A worker's service: its ledger is <data_dir>/llm-spend.sqlite, as in production."""
    return LlmService(endpoint_settings(fake.url, data_dir=data_dir, llm_daily_spend_cap_usd=cap), today=today)


def for_tenant(tenant: str | None):
    return REQUEST.model_copy(update={"tenant": tenant})


async def test_step_past_the_cap_goes_to_review_without_calling_the_model(fake_llm, tmp_path):
    service = capped_service(fake_llm, tmp_path, Today())
    fake_llm.script(answer(VALID, **EXPENSIVE), answer(VALID, **EXPENSIVE))

    first = await service.run(for_tenant("acme"))
    assert first.answer == VALID and first.record.cost_usd == pytest.approx(CALL_COST_USD)

    held = await service.run(for_tenant("acme"))
    assert len(fake_llm.requests) == 1
    assert held.needs_review and held.answer is None and held.record.calls == 0
    assert held.review_reasons == ["daily LLM spend cap of $0.01 reached for tenant acme"]
    assert held.record.cost_usd == 0 and "spend cap" in held.record.validation.errors[0]


async def test_another_tenant_is_not_held_by_one_tenants_spend(fake_llm, tmp_path):
    service = capped_service(fake_llm, tmp_path, Today())
    fake_llm.script(answer(VALID, **EXPENSIVE), answer(VALID, **EXPENSIVE))
    await service.run(for_tenant("acme"))
    other = await service.run(for_tenant("globex"))
    assert other.answer == VALID and len(fake_llm.requests) == 2


async def test_a_new_utc_day_starts_from_zero(fake_llm, tmp_path):
    today = Today()
    service = capped_service(fake_llm, tmp_path, today)
    fake_llm.script(answer(VALID, **EXPENSIVE), answer(VALID, **EXPENSIVE))
    await service.run(for_tenant("acme"))
    assert (await service.run(for_tenant("acme"))).needs_review
    today.day += timedelta(days=1)
    assert (await service.run(for_tenant("acme"))).answer == VALID
    assert len(fake_llm.requests) == 2


async def test_spend_is_shared_by_every_worker_on_the_data_dir_and_survives_a_restart(fake_llm, tmp_path):
    fake_llm.script(answer(VALID, **EXPENSIVE))
    await capped_service(fake_llm, tmp_path, Today()).run(for_tenant("acme"))
    another_worker = capped_service(fake_llm, tmp_path, Today())
    assert (await another_worker.run(for_tenant("acme"))).needs_review
    assert len(fake_llm.requests) == 1
    assert (tmp_path / SPEND_DB_FILE).exists()


async def test_spend_accumulates_under_the_cap_until_it_reaches_it(fake_llm, tmp_path):
    service = capped_service(fake_llm, tmp_path, Today(), cap=CALL_COST_USD * 2.5)
    fake_llm.script(*[answer(VALID, **EXPENSIVE)] * 3)
    results = [await service.run(for_tenant("acme")) for _ in range(4)]
    assert [r.needs_review for r in results] == [False, False, False, True]
    spent = await SqliteSpendLedger(tmp_path / SPEND_DB_FILE).spent("acme", Today().day)
    assert spent == pytest.approx(CALL_COST_USD * 3)


async def test_steps_without_a_tenant_or_without_a_cap_are_not_held(fake_llm, tmp_path):
    fake_llm.script(*[answer(VALID, **EXPENSIVE)] * 4)
    capped = capped_service(fake_llm, tmp_path, Today())
    uncapped = capped_service(fake_llm, tmp_path / "uncapped", Today(), cap=None)
    for service, tenant in ((capped, None), (capped, None), (uncapped, "acme"), (uncapped, "acme")):
        assert (await service.run(for_tenant(tenant))).answer == VALID
    assert not (tmp_path / "uncapped" / SPEND_DB_FILE).exists()  # no cap, no ledger


async def test_a_cap_of_zero_holds_even_the_free_offline_provider(tmp_path):
    service = LlmService(Settings(data_dir=tmp_path, llm_provider="offline", llm_daily_spend_cap_usd=0))
    result = await service.run(for_tenant("acme"))
    assert result.needs_review and result.review_reasons == ["daily LLM spend cap of $0 reached for tenant acme"]


async def test_concurrent_workers_lose_no_spend(tmp_path):
    path = tmp_path / SPEND_DB_FILE
    workers = [SqliteSpendLedger(path) for _ in range(4)]  # each with its own connections, like processes
    day = date(2026, 3, 14)
    await asyncio.gather(*(ledger.add("acme", day, 0.25) for ledger in workers for _ in range(50)))
    assert await workers[0].spent("acme", day) == pytest.approx(50.0)
    assert await workers[0].spent("acme", day + timedelta(days=1)) == 0.0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_compliance_review_charges_its_own_tenant(fake_llm, tmp_path, http, auth, tenant):
    """The workflow passes the run's tenant: a tenant past its cap gets a person, not the model."""
    configure(endpoint_settings(fake_llm.url, data_dir=tmp_path, llm_daily_spend_cap_usd=CAP_USD))
    try:
        await SqliteSpendLedger(tmp_path / SPEND_DB_FILE).add(tenant, utc_today(), 1.0)
        fake_llm.script()
        run_id = await start(http, auth)
        run = await waiting_for_approval(http, auth, run_id)
        assert fake_llm.requests == [] and run["llm"]["records"][0]["calls"] == 0
        reason = f"daily LLM spend cap of $0.01 reached for tenant {tenant}"
        assert reason in run["approvals"][0]["shown"]["review_reasons"]
        await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": "reject"}, headers=auth(**APPROVER))
        assert (await wait_for_run(http, run_id, auth()))["result"]["decision"] == "rejected"
    finally:
        configure(None)


@pytest.fixture(scope="module")
def redis_for_spend(tmp_path_factory: pytest.TempPathFactory):
    from tests.support import free_port
    from tests.test_rate_limits_redis import running_redis

    with running_redis(free_port(), tmp_path_factory.mktemp("redis-spend")) as url:
        yield url


async def test_workers_on_different_hosts_sharing_redis_hold_one_cap(fake_llm, tmp_path, redis_for_spend):
    from activities.llm.spend import RedisSpendLedger

    today = Today()
    # Two workers with data dirs of their own, as on two hosts: only Redis is shared.
    first, second = (LlmService(endpoint_settings(fake_llm.url, data_dir=tmp_path / host, redis_url=redis_for_spend,
                                                  llm_daily_spend_cap_usd=CAP_USD), today=today)
                     for host in ("host-a", "host-b"))
    assert isinstance(first.spend, RedisSpendLedger)
    fake_llm.script(answer(VALID, **EXPENSIVE), answer(VALID, **EXPENSIVE))
    tenant = f"acme-{tmp_path.name}"
    assert (await first.run(for_tenant(tenant))).answer == VALID
    held = await second.run(for_tenant(tenant))  # the other host sees what the first spent
    assert held.needs_review and len(fake_llm.requests) == 1
    assert await second.spend.spent(tenant, today.day) == pytest.approx(CALL_COST_USD)
    assert not (tmp_path / "host-a" / SPEND_DB_FILE).exists()  # nothing per host
    today.day += timedelta(days=1)  # a new UTC day, a new total
    assert (await second.run(for_tenant(tenant))).answer == VALID
