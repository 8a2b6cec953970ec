"""Schedules: recurring runs of a cataloged workflow, on Temporal Schedules (docs/schedules.md).

A tenant names its schedules; Temporal knows each as `<tenant>:<name>`, so a name is unique per
tenant and one tenant cannot address another's. The schedule's action starts the workflow exactly
as POST /v1/workflows/{name}/runs would — the same task queue, timeout, memo and search attributes —
with the schedule's owner as the requester, so scheduled runs list, approve, audit and bill like
any run. The input is validated once, when the schedule is created or updated, never when it fires.

This module translates between the API's models and Temporal's; the routes are
api/routes/schedules.py.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from api.models import IsoDateTime, WorkflowName
from steward import search_attributes as sa
from steward.identity import Principal
from workflows.spec import WorkflowSpec

SCHEDULE_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
Overlap = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"]
OVERLAP_POLICIES: dict[str, ScheduleOverlapPolicy] = {
    "skip": ScheduleOverlapPolicy.SKIP, "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "buffer_all": ScheduleOverlapPolicy.BUFFER_ALL, "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "terminate_other": ScheduleOverlapPolicy.TERMINATE_OTHER, "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}
# Runs a schedule starts: more often than this is a loop, not a schedule.
MIN_INTERVAL = timedelta(seconds=1)
MAX_BACKFILL = timedelta(days=366)
NEXT_ACTION_TIMES = 5
RECENT_ACTIONS = 10
# What a scheduled run carries in its memo: the schedule's name and how it was defined.
MEMO_KEY = "schedule"


def temporal_id(tenant: str, name: str) -> str:
    return f"{tenant}:{name}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(_Strict):
    start: int
    end: int | None = Field(None, description="Inclusive; the start alone when unset.")
    step: int = Field(1, ge=1)


RangeList = list[int | Range]


class CalendarSpec(_Strict):
    """Times in the schedule's timezone that match every field: each field is a list of values or
    {start, end, step} ranges (e.g. weekdays at 09:30: hour [9], minute [30], day_of_week
    [{start: 1, end: 5}], Sunday being 0). Unset fields: second 0, minute 0, hour 0, every day,
    month and weekday."""

    second: RangeList = Field(default_factory=lambda: [0])
    minute: RangeList = Field(default_factory=lambda: [0])
    hour: RangeList = Field(default_factory=lambda: [0])
    day_of_month: RangeList = Field(default_factory=lambda: [Range(start=1, end=31)])
    month: RangeList = Field(default_factory=lambda: [Range(start=1, end=12)])
    day_of_week: RangeList = Field(default_factory=lambda: [Range(start=0, end=6)])
    comment: str | None = Field(None, max_length=200)


class SpecIn(_Strict):
    """When the schedule fires: exactly one of a cron expression, an interval, or calendar times."""

    cron: str | None = Field(None, max_length=200, description='Five fields, e.g. "0 2 * * *" (02:00 daily).')
    interval: timedelta | None = Field(None, description="ISO 8601 duration (PT1H) or seconds: every so long.")
    offset: timedelta | None = Field(None, description="With interval: shifted this much from the epoch.")
    calendar: list[CalendarSpec] | None = Field(None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def exactly_one(self) -> SpecIn:
        given = [name for name in ("cron", "interval", "calendar") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of cron, interval or calendar (given: {', '.join(given) or 'none'})")
        if self.offset is not None and self.interval is None:
            raise ValueError("offset goes with interval")
        if self.interval is not None and self.interval < MIN_INTERVAL:
            raise ValueError(f"interval must be at least {MIN_INTERVAL.total_seconds():g} s")
        if self.cron is not None and len(self.cron.split()) not in (5, 6, 7):
            raise ValueError('cron has five fields: minute hour day-of-month month day-of-week, e.g. "0 2 * * *"')
        return self


class ScheduleSettings(_Strict):
    """How a schedule fires, apart from what it starts."""

    spec: SpecIn
    timezone: str = Field("UTC", description="IANA name, e.g. Europe/Berlin: cron and calendar times are in it.")
    overlap: Overlap = Field("skip", description="What happens when a run is due while the last is still going.")
    catchup_window: timedelta = Field(timedelta(hours=1), description="How late a missed run (Temporal was down) "
                                                                      "may still start.")
    jitter: timedelta | None = Field(None, description="Each run starts up to this much later, at random.")

    @field_validator("timezone")
    @classmethod
    def known_timezone(cls, value: str) -> str:
        if value != "UTC" and value not in available_timezones():
            raise ValueError(f"{value!r} is not an IANA timezone name (e.g. Europe/Berlin)")
        ZoneInfo(value)
        return value

    @field_validator("catchup_window")
    @classmethod
    def at_least_ten_seconds(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=10):
            raise ValueError("catchup_window must be at least 10 s (Temporal's minimum)")
        return value


class ScheduleCreate(ScheduleSettings):
    name: str = Field(pattern=SCHEDULE_NAME, description="Unique in the tenant; the URL segment.")
    workflow: WorkflowName
    input: dict[str, Any] = Field(default_factory=dict, description="Checked against the workflow's input model "
                                                                    "now, not when the schedule fires.")
    paused: bool = False
    note: str | None = Field(None, max_length=500, description="Why the schedule exists, or why it is paused.")


class ScheduleUpdateRequest(_Strict):
    input: dict[str, Any] | None = None
    spec: SpecIn | None = None
    timezone: str | None = None
    overlap: Overlap | None = None
    catchup_window: timedelta | None = None
    jitter: timedelta | None = None


class NoteRequest(_Strict):
    note: str | None = Field(None, max_length=500)


class TriggerRequest(_Strict):
    overlap: Overlap | None = Field(None, description="For this run only; the schedule's own when unset.")


class BackfillRequest(_Strict):
    start_at: IsoDateTime
    end_at: IsoDateTime
    overlap: Overlap | None = None

    @model_validator(mode="after")
    def a_bounded_past_range(self) -> BackfillRequest:
        if self.start_at.tzinfo is None or self.end_at.tzinfo is None:
            raise ValueError("start_at and end_at need a timezone (e.g. 2026-11-01T00:00:00Z)")
        if not self.start_at < self.end_at:
            raise ValueError("start_at must be before end_at")
        if self.end_at - self.start_at > MAX_BACKFILL:
            raise ValueError(f"a backfill covers at most {MAX_BACKFILL.days} days")
        return self


class RecentAction(BaseModel):
    scheduled_at: datetime
    started_at: datetime
    run_id: str = Field(description="GET /v1/runs/{run_id}")


class ScheduleView(BaseModel):
    name: str
    workflow: str
    owner: str = Field(description="Who created it: the requester of every run it starts.")
    spec: SpecIn
    timezone: str
    overlap: Overlap
    catchup_window: timedelta
    jitter: timedelta | None = None
    paused: bool
    note: str | None = None
    created_at: datetime | None = None
    next_action_times: list[datetime] = Field(default_factory=list)
    recent_actions: list[RecentAction] = Field(default_factory=list)
    actions_taken: int = 0
    actions_skipped_overlap: int = 0


class ScheduleDetail(ScheduleView):
    input: dict[str, Any] = Field(default_factory=dict)


class SchedulePage(BaseModel):
    schedules: list[ScheduleView]
    next_page_token: str | None = None


def settings_digest(workflow: str, validated_input: dict[str, Any], settings: ScheduleSettings) -> str:
    """What makes two requests for one schedule the same: a pipeline that creates its schedule on
    every run gets `unchanged` rather than a conflict."""
    canonical = json.dumps({"workflow": workflow, "input": validated_input,
                            "settings": settings.model_dump(mode="json", exclude_none=True)},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _ranges(values: RangeList) -> tuple[ScheduleRange, ...]:
    return tuple(ScheduleRange(v) if isinstance(v, int) else ScheduleRange(v.start, v.end or v.start, v.step)
                 for v in values)


def temporal_spec(settings: ScheduleSettings) -> ScheduleSpec:
    spec = settings.spec
    calendars = [ScheduleCalendarSpec(
        second=_ranges(c.second), minute=_ranges(c.minute), hour=_ranges(c.hour),
        day_of_month=_ranges(c.day_of_month), month=_ranges(c.month), day_of_week=_ranges(c.day_of_week),
        comment=c.comment) for c in spec.calendar or ()]
    return ScheduleSpec(
        cron_expressions=[spec.cron] if spec.cron else [],
        intervals=[ScheduleIntervalSpec(every=spec.interval, offset=spec.offset)] if spec.interval else [],
        calendars=calendars, jitter=settings.jitter, time_zone_name=settings.timezone)


def temporal_schedule(name: str, workflow: WorkflowSpec, validated: BaseModel, settings: ScheduleSettings,
                      owner: Principal, *, paused: bool, note: str | None, digest: str) -> Schedule:
    """The Temporal Schedule: its action starts `workflow` as the API would for `owner`."""
    memo = {**workflow.memo, "requested_by": owner.sub, "tenant": owner.tenant,
            # On every run it starts, and how the schedule was written (the API reads it back).
            MEMO_KEY: {"name": name, "workflow": workflow.name, "owner": owner.sub, "request_sha256": digest,
                       **settings.model_dump(mode="json", exclude_none=True)}}
    # Two tenants may both name a schedule "nightly": the run ids differ by the tenant's digest.
    tenant_tag = hashlib.sha256(owner.tenant.encode()).hexdigest()[:8]
    action = ScheduleActionStartWorkflow(
        workflow.name, workflow.argument(validated), id=f"{workflow.name}-{tenant_tag}-{name}",
        task_queue=workflow.task_queue, execution_timeout=workflow.execution_timeout, memo=memo,
        typed_search_attributes=sa.for_new_run(workflow.name, owner.tenant, owner.sub),
        static_summary=f"{workflow.static_summary(validated)} (schedule {name})")
    return Schedule(
        action=action, spec=temporal_spec(settings),
        policy=SchedulePolicy(overlap=OVERLAP_POLICIES[settings.overlap], catchup_window=settings.catchup_window),
        state=ScheduleState(paused=paused, note=note))


async def _decoded(converter: DataConverter, value: Any) -> Any:
    """A described schedule's action keeps its memo and arguments encoded (and encrypted)."""
    if isinstance(value, Payload):
        (decoded,) = await converter.decode([value])
        return decoded
    return value


async def written_settings(description: ScheduleDescription, converter: DataConverter) -> dict[str, Any]:
    """The schedule as its request wrote it, from the memo its action gives every run."""
    action = description.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    return await _decoded(converter, dict(action.memo or {}).get(MEMO_KEY)) or {}


async def view_of(description: ScheduleDescription, converter: DataConverter, *,
                  with_input: bool = False) -> ScheduleView:
    schedule = description.schedule
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    written = await written_settings(description, converter)
    info = description.info
    recent = [RecentAction(scheduled_at=a.scheduled_at, started_at=a.started_at, run_id=a.action.workflow_id)
              for a in info.recent_actions[-RECENT_ACTIONS:] if hasattr(a.action, "workflow_id")]
    fields = dict(
        name=written["name"], workflow=written["workflow"], owner=written["owner"],
        spec=SpecIn.model_validate(written["spec"]), timezone=written.get("timezone", "UTC"),
        overlap=written.get("overlap", "skip"), catchup_window=written.get("catchup_window", timedelta(hours=1)),
        jitter=written.get("jitter"), paused=schedule.state.paused, note=schedule.state.note or None,
        created_at=info.created_at, next_action_times=info.next_action_times[:NEXT_ACTION_TIMES],
        recent_actions=recent, actions_taken=info.num_actions,
        actions_skipped_overlap=info.num_actions_skipped_overlap)
    if not with_input:
        return ScheduleView(**fields)
    args = action.args
    return ScheduleDetail(**fields, input=_input_of(await _decoded(converter, args[0]) if args else {}))


def _input_of(argument: Any) -> dict[str, Any]:
    """The input a run will get, as the caller wrote it (a declarative run's argument wraps it)."""
    if isinstance(argument, dict) and "definition_sha256" in argument and "input" in argument:
        return dict(argument["input"])
    return dict(argument) if isinstance(argument, dict) else {}


def utc_now() -> datetime:
    return datetime.now(UTC)
