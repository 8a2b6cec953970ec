"""Adding a workflow is adding a module: discovery, the spec's checks, and a dropped-in module
appearing in the catalog and running."""

from __future__ import annotations

import sys
import textwrap
import uuid

import httpx
import pytest
from pydantic import BaseModel
from temporalio import workflow

from tests.support import free_port, running_workers, serve_api, wait_for_run
from workflows.catalog import Catalog, CatalogError, discover
from workflows.spec import WorkflowSpec

DROP_IN_MODULE = '''
"""A workflow written by an engineer who touched nothing but this file."""
from pydantic import BaseModel
from temporalio import workflow

from workflows.spec import WorkflowSpec


class GreetingInput(BaseModel):
    name: str


class GreetingOutput(BaseModel):
    greeting: str


@workflow.defn(name="greet-customer")
class GreetCustomer:
    @workflow.run
    async def run(self, request: GreetingInput) -> GreetingOutput:
        return GreetingOutput(greeting=f"Welcome, {request.name}")


SPEC = WorkflowSpec(
    name="greet-customer",
    description="Greets a customer.",
    workflow=GreetCustomer,
    input_model=GreetingInput,
    output_model=GreetingOutput,
    task_queue="TASK_QUEUE",
)
'''


@pytest.fixture
def drop_in_package(tmp_path, monkeypatch) -> str:
    package = f"dropin_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    module = DROP_IN_MODULE.replace("TASK_QUEUE", f"queue-{package}")
    (tmp_path / package / "greet_customer.py").write_text(textwrap.dedent(module))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [m for m in sys.modules if m.startswith(package)]:
        del sys.modules[name]


async def test_dropped_in_module_appears_in_catalog_and_runs(client, settings, drop_in_package, auth):
    own_settings = settings.model_copy(update={"workflow_packages": [drop_in_package], "api_port": free_port()})
    spec = discover(own_settings.workflow_packages).get("greet-customer")
    assert spec.task_queue == f"queue-{drop_in_package}"

    # The session worker already serves the built-in queue on this client; serve only the new one.
    async with (running_workers(client, Catalog({spec.name: spec}), platform=False), serve_api(own_settings, client) as url,
                httpx.AsyncClient(base_url=url) as http):
        listed = (await http.get("/v1/workflows", headers=auth())).json()["workflows"]
        greet = next(w for w in listed if w["name"] == "greet-customer")
        assert greet["description"] == "Greets a customer."
        assert greet["input_schema"]["required"] == ["name"]
        started = await http.post("/v1/workflows/greet-customer/runs", json={"input": {"name": "Ada"}},
                                  headers=auth())
        assert started.status_code == 202
        run = await wait_for_run(http, started.json()["id"], auth())
        assert run["result"] == {"greeting": "Welcome, Ada"}


def test_builtin_catalog_lists_the_workflows_and_hides_the_benchmark():
    catalog = discover()
    assert [s.name for s in catalog.listed()] == ["compliance-documentation", "customer-onboarding", "document-fingerprint",
                                                 "incident-response"]
    assert catalog.get("steward-benchmark").listed is False


def test_two_modules_declaring_one_name_is_an_error(drop_in_package, tmp_path):
    (tmp_path / drop_in_package / "copy.py").write_text(
        textwrap.dedent(DROP_IN_MODULE.replace("TASK_QUEUE", "q")).replace("GreetCustomer", "Copy"))
    with pytest.raises(CatalogError, match="greet-customer.*declared in both"):
        discover([drop_in_package])


def test_unimportable_workflow_package_is_an_error_naming_it():
    with pytest.raises(CatalogError, match="no_such_package_here"):
        discover(["no_such_package_here"])


class _In(BaseModel):
    x: int


@workflow.defn(name="well-named")
class _WellNamed:
    @workflow.run
    async def run(self, request: _In) -> _In:
        return request


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "Not_Kebab"}, "kebab-case"),
    ({"name": "other-name"}, "must match"),
    ({"description": ""}, "one-line description"),
    ({"description": "two\nlines"}, "one-line description"),
    ({"input_model": dict}, "not a pydantic model"),
])
def test_spec_refuses_inconsistent_declarations(changes, message):
    fields = {"name": "well-named", "description": "Fine.", "workflow": _WellNamed,
              "input_model": _In, "output_model": _In, **changes}
    with pytest.raises((ValueError, TypeError), match=message):
        WorkflowSpec(**fields)
