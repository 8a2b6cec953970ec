"""The `route-incident` activity: which route of the routing policy pages for an incident.

Workflows read no files or settings, so the policy (policies/incident-routing.yaml or
STEWARD_INCIDENT_ROUTING) and the addresses it refers to reach the workflow as this activity's
result: `to: oncall` becomes STEWARD_ONCALL_EMAIL, and the base URL for links in pages comes along.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from policies import routing
from policies.routing import Route
from steward import runtime


class RouteRequest(BaseModel):
    labels: dict[str, str]


class IncidentRoute(BaseModel):
    route: Route
    link_base_url: str


@activity.defn(name="route-incident")
async def route_incident(request: RouteRequest) -> IncidentRoute:
    settings = runtime.settings()
    route = routing.load(settings.incident_routing).route_for(request.labels).model_copy(deep=True)
    for step in route.steps:
        for recipient in step.page:
            for target in recipient.via:
                if target.channel == "email" and target.to == routing.ONCALL:
                    # Unset, the email channel reports "no address" and the page falls through.
                    target.to = settings.oncall_email
    activity.logger.info("incident routed", extra={"route": route.name})
    return IncidentRoute(route=route, link_base_url=settings.link_base_url)
