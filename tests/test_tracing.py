"""One trace from the HTTP request through the workflow into its activity."""

from __future__ import annotations

from tests.support import wait_for_run


async def test_api_request_workflow_and_activity_share_one_span_tree(http, auth, span_exporter):
    docs = {"documents": [{"name": "trace.txt", "text": "follow me"}]}
    started = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": docs}, headers=auth())
    run_id = started.json()["id"]
    await wait_for_run(http, run_id, auth())

    spans = span_exporter.get_finished_spans()
    start = next(s for s in spans if s.name == "StartWorkflow:document-fingerprint"
                 and s.attributes.get("temporalWorkflowID") == run_id)
    trace = [s for s in spans if s.context.trace_id == start.context.trace_id]
    by_id = {s.context.span_id: s for s in trace}

    def ancestors(span) -> list[str]:
        names = []
        while span.parent is not None:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names

    def parent_name(name: str) -> str:
        span = next(s for s in trace if s.name == name)
        return by_id[span.parent.span_id].name

    # The start happens inside the route's handler, under FastAPI's server span for the request.
    request = by_id[start.parent.span_id]
    while request.parent is not None:
        request = by_id[request.parent.span_id]
    assert request.name == "POST /v1/workflows/{name}/runs"
    assert request.attributes["url.path"] == "/v1/workflows/document-fingerprint/runs"
    assert ancestors(start)[-1] == request.name
    assert parent_name("RunWorkflow:document-fingerprint") == "StartWorkflow:document-fingerprint"
    # Temporal's TracingInterceptor records workflow-side spans as children of the start.
    assert parent_name("StartActivity:fingerprint-documents") == "StartWorkflow:document-fingerprint"
    assert parent_name("CompleteWorkflow:document-fingerprint") == "StartWorkflow:document-fingerprint"
    assert parent_name("RunActivity:fingerprint-documents") == "StartActivity:fingerprint-documents"
    assert request.attributes["http.route"] == "/v1/workflows/{name}/runs"
    assert request.attributes["http.response.status_code"] == 202
