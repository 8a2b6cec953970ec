"""One message, any channel: what a notification says, and how each channel writes it.

A workflow composes a `Notice` once (a title, a few lines, label/value fields, links) and names the
channels it goes out on; each channel activity renders it its own way: e-mail as text and HTML,
Slack as Block Kit with a plain-text fallback, a webhook as JSON. A notice may ask for an action
link (acknowledge); the channel activity signs it for the one recipient it delivers to, so the
link — a credential — exists only in the message, never in workflow history.
"""

from __future__ import annotations

import html
from datetime import timedelta

from pydantic import BaseModel, Field

from steward import runtime
from steward.action_links import DEFAULT_TTL, Action, ActionClaim, action_url, sign_action


class Link(BaseModel):
    label: str = Field(max_length=80)
    url: str = Field(max_length=2000)


class ActionRequest(BaseModel):
    """Ask the channel to add a signed link for this action on this run (api/routes/actions.py)."""

    action: Action
    label: str = Field(max_length=80)
    run_id: str
    tenant: str
    ttl: timedelta = DEFAULT_TTL


class Notice(BaseModel):
    title: str = Field(max_length=300)
    lines: list[str] = Field(default_factory=list, description="Paragraphs of plain text.")
    fields: list[tuple[str, str]] = Field(default_factory=list, description="Label/value pairs, e.g. severity.")
    links: list[Link] = Field(default_factory=list)
    action: ActionRequest | None = None


def links_for(notice: Notice, recipient: str) -> list[Link]:
    """The notice's links, with its action link signed for `recipient` first."""
    links = list(notice.links)
    if notice.action is not None:
        settings = runtime.settings()
        claim = ActionClaim(action=notice.action.action, run_id=notice.action.run_id, tenant=notice.action.tenant,
                            recipient=recipient)
        token = sign_action(settings.jwt_signing_secret(), claim, ttl=notice.action.ttl)
        links.insert(0, Link(label=notice.action.label, url=action_url(settings.link_base_url, token)))
    return links


def as_text(notice: Notice, links: list[Link]) -> str:
    parts = [notice.title, ""]
    parts += [f"{label}: {value}" for label, value in notice.fields]
    if notice.fields:
        parts.append("")
    for line in notice.lines:
        parts += [line, ""]
    parts += [f"{link.label}: {link.url}" for link in links]
    return "\n".join(parts).rstrip() + "\n"


def as_html(notice: Notice, links: list[Link]) -> str:
    e = html.escape
    rows = "".join(f"<tr><td style=\"color:#6c757d;padding-right:12px\">{e(k)}</td><td>{e(v)}</td></tr>"
                   for k, v in notice.fields)
    paragraphs = "".join(f"<p>{e(line)}</p>" for line in notice.lines)
    buttons = "".join(
        f"<p><a href=\"{e(link.url, quote=True)}\" style=\"display:inline-block;padding:8px 14px;background:#17325a;"
        f"color:#ffffff;text-decoration:none;border-radius:4px\">{e(link.label)}</a></p>" for link in links
    )
    return (f"<!doctype html><html><body style=\"font-family:Arial,sans-serif;color:#212529\">"
            f"<h2 style=\"color:#17325a\">{e(notice.title)}</h2><table>{rows}</table>{paragraphs}{buttons}"
            f"</body></html>")


def as_slack(notice: Notice, links: list[Link]) -> dict:
    """Block Kit blocks with a plain `text` fallback (notifications, and clients without blocks).

    Text goes in as plain_text or escaped mrkdwn, so a value from an alert cannot mention
    @channel or forge a link.
    """

    def mrkdwn_escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}}]
    if notice.fields:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{mrkdwn_escape(k)}*\n{mrkdwn_escape(v)}"} for k, v in notice.fields[:10]
        ]})
    for line in notice.lines:
        blocks.append({"type": "section", "text": {"type": "plain_text", "text": line[:3000]}})
    if links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": link.label}, "url": link.url}
            for link in links[:5]
        ]})
    return {"text": as_text(notice, links), "blocks": blocks}
