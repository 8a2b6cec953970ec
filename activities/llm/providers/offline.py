"""The offline provider: deterministic rules, no network, no model.

It is what `make up` uses on a machine without a model, and it is honest about it: every record
names the model `steward-offline-<version>`, the explanation says the answer comes from rules,
and tokens and cost are zero. Each answer lists the signals it rests on, so a reviewer can check
every step. The rules are small and readable on purpose; a compliance team tunes them here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from activities.compliance.reference import HARD_TO_VERIFY_FUNDS, UNDISCLOSED_FUNDS, income_consistency
from activities.llm.models import LlmTaskRequest
from activities.llm.providers.base import ProviderReply
from activities.llm.tasks import LlmTask

RULES_VERSION = "1"
MODEL_NAME = f"steward-offline-{RULES_VERSION}"

# --- risk classification ----------------------------------------------------------------------

HIGH_RISK_SCORE = 60
MEDIUM_RISK_SCORE = 25
SANCTIONED_COUNTRY_POINTS = 60
PEP_POINTS = 40
UNDISCLOSED_FUNDS_POINTS = 30
CASH_FUNDS_POINTS = 25
HARD_TO_VERIFY_FUNDS_POINTS = 10
INCOME_INCONSISTENT_POINTS = 25
MINOR_POINTS = 25
DOCUMENT_INDICATOR_POINTS = 10
DOCUMENT_INDICATOR_CAP = 30
DOCUMENT_INDICATORS = (
    "shell company", "offshore", "nominee", "bearer share", "sanction", "money laundering", "fraud",
    "embezzle", "bribe", "tax haven", "politically exposed",
)


def _risk_classification(request: LlmTaskRequest, sanctioned: frozenset[str]) -> dict[str, Any]:
    facts = request.facts
    signals: list[tuple[int, str]] = []

    country = str(facts.get("country") or "").upper()
    if country in sanctioned or facts.get("country_risk") == "sanctioned":
        signals.append((SANCTIONED_COUNTRY_POINTS, f"Country {country or '(given)'} is on the sanctioned-country list."))
    elif facts.get("country_risk") == "high":
        signals.append((MEDIUM_RISK_SCORE, f"Country {country} is rated high risk."))
    if facts.get("pep") is True:
        signals.append((PEP_POINTS, "The applicant is a politically exposed person."))

    funds = str(facts.get("source_of_funds") or "").strip().lower()
    if funds in UNDISCLOSED_FUNDS:
        signals.append((UNDISCLOSED_FUNDS_POINTS, "The source of funds is not disclosed."))
    elif "cash" in funds:
        signals.append((CASH_FUNDS_POINTS, f"The source of funds is cash ({funds!r})."))
    elif any(word in funds for word in HARD_TO_VERIFY_FUNDS):
        signals.append((HARD_TO_VERIFY_FUNDS_POINTS, f"The source of funds is hard to verify ({funds!r})."))

    occupation = str(facts.get("occupation") or "").strip().lower()
    income = facts.get("annual_income")
    if isinstance(income, int | float) and income_consistency(occupation, income) == "inconsistent":
        signals.append((INCOME_INCONSISTENT_POINTS,
                        f"Declared income {income:,.0f} is inconsistent with the occupation {occupation!r}."))

    age = facts.get("age")
    if isinstance(age, int | float) and age < 18:
        signals.append((MINOR_POINTS, f"The applicant is a minor (age {age:.0f})."))

    document_points = 0
    for doc in request.untrusted:
        text = doc.text.lower()
        for indicator in DOCUMENT_INDICATORS:
            if indicator in text and document_points < DOCUMENT_INDICATOR_CAP:
                document_points += DOCUMENT_INDICATOR_POINTS
                signals.append((DOCUMENT_INDICATOR_POINTS, f"Document {doc.name!r} mentions {indicator!r}."))

    score = sum(points for points, _ in signals)
    level = "high" if score >= HIGH_RISK_SCORE else "medium" if score >= MEDIUM_RISK_SCORE else "low"
    missing = [f for f in ("source_of_funds", "occupation", "annual_income") if facts.get(f) in (None, "")]
    reasons = [reason for _, reason in signals] or ["No risk indicator found in the declared facts or documents."]
    return {
        "risk_level": level,
        "decision": "clear" if level == "low" and facts.get("pep") is not True else "review",
        # Rules are certain of what they check, less so when facts they rely on are missing.
        "confidence": round(max(0.5, 0.95 - 0.1 * len(missing)), 2),
        "reasons": reasons,
        "explanation": (
            f"Rule-based assessment by {MODEL_NAME} (not a language model): risk score {score} from "
            f"{len(signals)} signal(s); high at {HIGH_RISK_SCORE}, medium at {MEDIUM_RISK_SCORE}."
            + (f" Missing facts: {', '.join(missing)}." if missing else "")
        ),
    }


# --- root-cause hypotheses --------------------------------------------------------------------

CAUSE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Memory exhaustion (OOM)": ("oomkilled", "out of memory", "oom", "memory limit", "heap space"),
    "Disk full": ("no space left", "disk full", "enospc", "disk pressure", "filesystem full"),
    "Dependency unavailable": ("connection refused", "econnrefused", "upstream", "503", "unavailable", "timed out"),
    "Bad deployment or configuration change": ("deploy", "rollout", "release", "config change", "new version"),
    "Expired or invalid certificate": ("certificate", "x509", "tls handshake", "ssl"),
    "Database contention or exhaustion": ("deadlock", "too many connections", "replication lag", "lock wait"),
    "Rate limiting or throttling": ("429", "rate limit", "throttl"),
    "CPU saturation": ("cpu throttling", "high cpu", "load average", "cpu usage"),
    "Crash loop": ("crashloopbackoff", "back-off restarting", "exit code 137", "segfault", "panic"),
}
# What usually restores service for each cause: a runbook's first line, not a diagnosis. A
# person approves any remediation before it runs (workflows/incident_response.py).
REMEDIATIONS: dict[str, tuple[str, str, str]] = {
    "Memory exhaustion (OOM)": ("Restart the affected pods and raise their memory limit",
                                "Processes are being killed for memory; a restart restores service while the "
                                "limit buys time to find the growth.", "low"),
    "Disk full": ("Free disk space on the affected volume (old logs, archives) or expand it",
                  "Writes fail once the volume is full; space restores them.", "low"),
    "Dependency unavailable": ("Fail over to a healthy instance of the dependency or restart it",
                               "Calls to a dependency are refused or time out.", "medium"),
    "Bad deployment or configuration change": ("Roll back the latest deployment or configuration change",
                                               "The failure follows a change; rolling back is the quickest "
                                               "known-good state.", "medium"),
    "Expired or invalid certificate": ("Renew and redeploy the certificate",
                                       "TLS handshakes fail on the certificate.", "low"),
    "Database contention or exhaustion": ("Kill the blocking sessions and raise the connection pool limit",
                                          "Locks or connection limits stall queries.", "high"),
    "Rate limiting or throttling": ("Reduce the request rate (back off retries) or raise the quota",
                                    "Requests are refused for their rate.", "low"),
    "CPU saturation": ("Scale out the affected service", "Work queues behind saturated CPUs.", "low"),
    "Crash loop": ("Roll back to the last version that stayed up",
                   "The process exits right after starting.", "medium"),
}
MAX_HYPOTHESES = 3
MAX_EVIDENCE = 5


def _evidence_lines(request: LlmTaskRequest) -> list[str]:
    lines = [f"{k}={v}" for k, v in sorted(_flatten(request.facts).items())]
    for doc in request.untrusted:
        lines += [line.strip() for line in doc.text.splitlines() if line.strip()]
    return lines


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): str(value)}


def _root_cause_hypotheses(request: LlmTaskRequest, _: frozenset[str]) -> dict[str, Any]:
    lines = _evidence_lines(request)
    scored = []
    for cause, keywords in CAUSE_KEYWORDS.items():
        evidence = [line[:300] for line in lines if any(k in line.lower() for k in keywords)]
        if evidence:
            scored.append((len(evidence), cause, evidence[:MAX_EVIDENCE]))
    scored.sort(key=lambda item: (-item[0], item[1]))
    total = sum(count for count, _, _ in scored) or 1
    hypotheses = [
        {"cause": cause, "likelihood": round(count / total, 2), "evidence": evidence}
        for count, cause, evidence in scored[:MAX_HYPOTHESES]
    ]
    answer: dict[str, Any] = {
        "hypotheses": hypotheses,
        "confidence": 0.6 if hypotheses else 0.2,
        "explanation": (
            f"Keyword matching by {MODEL_NAME} (not a language model) over {len(lines)} alert fields and log lines; "
            + (f"{len(scored)} known failure pattern(s) matched." if scored else "no known failure pattern matched.")
        ),
    }
    if hypotheses:
        action, rationale, risk = REMEDIATIONS[hypotheses[0]["cause"]]
        answer["remediation"] = {"action": action, "rationale": rationale, "risk": risk}
    return answer


# --- summary ----------------------------------------------------------------------------------

STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were will with "
    "which who we you they he she not but if then than so such can may must shall should".split()
)
SUMMARY_SENTENCES = 3
KEY_POINTS = 5
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[a-z][a-z'-]+")


def _summary(request: LlmTaskRequest, _: frozenset[str]) -> dict[str, Any]:
    sentences = [s.strip() for doc in request.untrusted for s in _SENTENCE.split(doc.text) if len(s.strip()) > 20]
    frequencies = Counter(w for s in sentences for w in _WORD.findall(s.lower()) if w not in STOPWORDS)

    def weight(sentence: str) -> float:
        words = [w for w in _WORD.findall(sentence.lower()) if w not in STOPWORDS]
        return sum(frequencies[w] for w in words) / (len(words) or 1)

    ranked = sorted(range(len(sentences)), key=lambda i: (-weight(sentences[i]), i))
    chosen = sorted(ranked[:SUMMARY_SENTENCES])
    summary = " ".join(sentences[i] for i in chosen)[:1200] or "The documents contain no sentences to summarise."
    return {
        "summary": summary,
        "key_points": [sentences[i][:300] for i in sorted(ranked[:KEY_POINTS])],
        "confidence": 0.5,
        "explanation": (
            f"Extractive summary by {MODEL_NAME} (not a language model): the {len(chosen)} sentence(s) "
            f"with the most frequent terms among {len(sentences)}."
        ),
    }


HANDLERS: dict[str, Callable[[LlmTaskRequest, frozenset[str]], dict[str, Any]]] = {
    "risk-classification": _risk_classification,
    "root-cause-hypotheses": _root_cause_hypotheses,
    "summary": _summary,
}


class OfflineProvider:
    name: Literal["offline"] = "offline"
    model = MODEL_NAME
    rate_limited = False
    follows_instructions = False

    def __init__(self, *, sanctioned_countries: list[str]) -> None:
        self.sanctioned = frozenset(c.upper() for c in sanctioned_countries)

    async def complete(self, task: LlmTask, request: LlmTaskRequest, messages: list[dict[str, Any]]) -> ProviderReply:
        answer = HANDLERS[task.name](request, self.sanctioned)
        # No model, no tokens: zero is the honest count, and the cost follows from it.
        return ProviderReply(content=json.dumps(answer), model_version=MODEL_NAME, input_tokens=0, output_tokens=0)
