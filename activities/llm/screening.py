"""Screening untrusted text for prompt-injection attempts before any model sees it.

A match does not drop anything: the step is forced to human review and every match is recorded
with the rule and the text that matched. The rules aim at the common families — overriding
instructions, extracting the system prompt, role-play redirection, fake delimiters — and are
deliberately broad: a false positive costs a human a look, a false negative costs trust.
"""

from __future__ import annotations

import re
import unicodedata

from activities.llm.models import InjectionFlag, UntrustedText

EXCERPT_CHARS = 120

RULES: dict[str, re.Pattern[str]] = {
    "instruction-override": re.compile(
        r"\b(ignore|disregard|forget|override|skip)\b[^.\n]{0,40}\b(previous|prior|above|earlier|all|any|your)\b"
        r"[^.\n]{0,40}\b(instructions?|prompts?|rules?|guidelines?|directions?|context)\b",
        re.IGNORECASE,
    ),
    "new-instructions": re.compile(
        r"\b(new|updated|real|actual)\s+(instructions?|system\s+prompt|rules?)\s*[:\-]", re.IGNORECASE
    ),
    "system-prompt-exfiltration": re.compile(
        r"\b(reveal|print|show|repeat|output|leak|disclose|tell me)\b[^.\n]{0,40}"
        r"\b(system\s+prompt|hidden\s+prompt|your\s+(instructions|prompt|rules)|initial\s+prompt)\b",
        re.IGNORECASE,
    ),
    "role-play-redirection": re.compile(
        r"\b(you\s+are\s+now|act\s+as|pretend\s+(to\s+be|you\s+are)|from\s+now\s+on\s+you|roleplay\s+as|"
        r"developer\s+mode|jailbreak|DAN\b)",
        re.IGNORECASE,
    ),
    "decision-steering": re.compile(
        r"\b(classify|mark|rate|set)\b[^.\n]{0,30}\b(this|me|the\s+applicant|applicant)\b[^.\n]{0,30}"
        r"\b(as\s+)?(low[\s-]risk|clear(ed)?|approved?)\b",
        re.IGNORECASE,
    ),
    "fake-delimiter": re.compile(r"<<<\s*(END\s+)?DATA\b|<\|?(im_start|im_end|system|endoftext)\|?>", re.IGNORECASE),
    "chat-role-marker": re.compile(r"^\s*(system|assistant)\s*:", re.IGNORECASE | re.MULTILINE),
}


def _normalise(text: str) -> str:
    # Fold look-alike characters (full-width letters, ligatures) and drop zero-width characters
    # that would otherwise split a phrase past the rules.
    folded = unicodedata.normalize("NFKC", text)
    return re.sub(r"[\u200b-\u200f\u2060\ufeff]", "", folded)


def screen(items: list[UntrustedText]) -> list[InjectionFlag]:
    flags = []
    for item in items:
        text = _normalise(item.text)
        for rule, pattern in RULES.items():
            for match in pattern.finditer(text):
                flags.append(InjectionFlag(source=item.name, rule=rule, excerpt=match.group(0)[:EXCERPT_CHARS]))
    return flags
