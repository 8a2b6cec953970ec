"""The offline provider: deterministic rules that still do useful work, reported honestly."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.testing import ActivityEnvironment

from activities.llm.activity import run_llm_task
from activities.llm.models import LlmTaskRequest, UntrustedText
from activities.llm.providers.offline import MODEL_NAME
from activities.llm.service import configure
from steward.settings import Settings

CLEAN = {"country": "DE", "pep": False, "source_of_funds": "salary", "occupation": "teacher",
         "annual_income": 52_000, "age": 41}

RISK_CASES = [
    # (name, facts overrides, documents, expected level, expected decision, a reason fragment)
    ("clean salaried teacher", {}, [], "low", "clear", "No risk indicator"),
    ("politically exposed person", {"pep": True}, [], "medium", "review", "politically exposed"),
    ("sanctioned country", {"country": "IR"}, [], "high", "review", "sanctioned-country list"),
    ("undisclosed source of funds", {"source_of_funds": None}, [], "medium", "review", "not disclosed"),
    ("cash source of funds", {"source_of_funds": "Cash savings"}, [], "medium", "review", "cash"),
    ("income far above occupation", {"occupation": "student", "annual_income": 400_000}, [], "medium", "review",
     "inconsistent with the occupation"),
    ("pep with cash and offshore documents", {"pep": True, "source_of_funds": "cash"},
     [("bank.txt", "Transfers routed via an offshore shell company.")], "high", "review", "offshore"),
    ("minor", {"age": 16}, [], "medium", "review", "minor"),
    ("gift is hard to verify but alone stays low", {"source_of_funds": "gift from parents"}, [], "low", "clear",
     "hard to verify"),
]


@pytest.fixture(autouse=True)
def offline():
    configure(Settings(llm_provider="offline", sanctioned_countries=["IR", "KP"]))
    yield
    configure(None)


async def run(task: str, facts: dict, documents: list[tuple[str, str]] = ()):
    request = LlmTaskRequest(task=task, step="test", facts=facts,
                             untrusted=[UntrustedText(name=n, text=t) for n, t in documents])
    return await ActivityEnvironment().run(run_llm_task, request)


@pytest.mark.parametrize(("name", "overrides", "documents", "level", "decision", "reason"), RISK_CASES,
                         ids=[c[0] for c in RISK_CASES])
async def test_risk_classification_rules(name, overrides, documents, level, decision, reason):
    result = await run("risk-classification", {**CLEAN, **overrides}, documents)
    assert (result.answer["risk_level"], result.answer["decision"]) == (level, decision)
    assert any(reason in r for r in result.answer["reasons"]), result.answer["reasons"]
    assert result.record.validation.valid


async def test_offline_answers_are_reported_as_rules_not_a_model():
    result = await run("risk-classification", CLEAN)
    record = result.record
    assert record.provider == "offline"
    assert record.model_requested == record.model_version == MODEL_NAME == "steward-offline-1"
    assert (record.input_tokens, record.output_tokens, record.cost_usd) == (0, 0, 0.0)
    assert "not a language model" in result.answer["explanation"]


async def test_missing_facts_lower_the_confidence():
    full = await run("risk-classification", CLEAN)
    sparse = await run("risk-classification", {"country": "DE", "pep": False, "source_of_funds": "salary"})
    assert sparse.answer["confidence"] < full.answer["confidence"]
    assert "Missing facts: occupation, annual_income" in sparse.answer["explanation"]


async def test_root_cause_hypotheses_rank_the_pattern_with_most_evidence_first():
    alert = {"labels": {"alertname": "PodRestarting", "namespace": "payments"},
             "annotations": {"summary": "payments-api restarting"}}
    logs = ("2026-11-22T10:00:01Z payments-api OOMKilled: memory limit 512Mi exceeded\n"
            "2026-11-22T10:00:02Z kubelet Back-off restarting failed container\n"
            "2026-11-22T10:00:03Z payments-api java.lang.OutOfMemoryError: Java heap space\n")
    result = await run("root-cause-hypotheses", alert, [("kubectl-logs.txt", logs)])
    top = result.answer["hypotheses"][0]
    assert top["cause"] == "Memory exhaustion (OOM)"
    assert any("OOMKilled" in line for line in top["evidence"])
    assert result.record.decision == "Memory exhaustion (OOM)"
    assert result.record.prompt_template == "root-cause-hypotheses.v2"
    remedy = result.answer["remediation"]
    assert "memory limit" in remedy["action"] and remedy["risk"] == "low"


async def test_root_cause_with_no_known_pattern_says_so_with_low_confidence():
    result = await run("root-cause-hypotheses", {"labels": {"alertname": "Mystery"}}, [("log.txt", "all quiet")])
    assert result.answer["hypotheses"] == [] and result.answer["confidence"] <= 0.2
    assert "remediation" not in result.answer  # no evidence, no suggestion


async def test_summary_picks_the_sentences_carrying_the_documents_main_terms():
    policy = ("Customer identity must be verified before any account is opened. "
              "Verification uses a government identity document and a proof of address. "
              "The office coffee machine is on the second floor. "
              "Identity verification records are kept for five years.")
    result = await run("summary", {"purpose": "onboarding policy"}, [("policy.txt", policy)])
    assert "coffee" not in result.answer["summary"]
    assert "identity" in result.answer["summary"].lower()
    assert 1 <= len(result.answer["key_points"]) <= 5


async def test_offline_calls_take_nothing_from_the_model_budget():
    """The rules run in the worker: a budget of one request a minute must not hold the second."""
    configure(Settings(llm_provider="offline", llm_requests_per_minute=1, llm_tokens_per_minute=16))

    # A budgeted second call would wait about a minute; the deadline only catches that hang.
    results = await asyncio.wait_for(asyncio.gather(*(run("risk-classification", CLEAN) for _ in range(3))), 30)

    assert all(r.record.validation.valid for r in results)


async def test_the_offline_rules_send_a_definitions_own_task_to_a_person_instead_of_inventing_an_answer():
    request = LlmTaskRequest(task="enrich-records.extract", step="extract-0", instructions="Extract the company.",
                             output_schema={"type": "object", "properties": {"company": {"type": "string"}}})
    result = await ActivityEnvironment().run(run_llm_task, request)
    assert result.answer is None and result.needs_review and result.record.calls == 0
    assert "offline provider cannot follow a definition's own instructions" in result.review_reasons[0]
