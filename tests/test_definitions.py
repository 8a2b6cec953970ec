"""Declarative workflow definitions: the format, and checking it the way an author needs (every
problem, with file, line and column), the step graph, and the Mermaid picture of it."""

from __future__ import annotations

import textwrap

import jsonschema
from pydantic import BaseModel

from activities.step_context import StepContext
from workflows.definition import DefinitionFile, WorkflowDefinition, mermaid, parse_duration, waves
from workflows.definition_check import Blocks, check


class Extract(BaseModel):
    document: str
    language: str = "en"


BLOCKS = Blocks(activities={"ExtractApplicantData": StepContext, "ExtractFields": Extract, "ClassifyRisk": None,
                            "GenerateReport": None},
                llm_tasks=frozenset({"summary"}), workflows=frozenset({"document-fingerprint"}))


def checked(text: str):
    return check(textwrap.dedent(text), "flows/example.yaml", BLOCKS)


def problems(text: str) -> list[str]:
    return [str(p) for p in checked(text).problems]


def test_the_seeds_shape_is_valid_as_written_and_runs_in_order():
    result = checked("""\
        workflow:
          id: compliance-documentation-lite
          steps:
            - name: extract_data
              activity: ExtractApplicantData
            - name: classify_risk
              activity: ClassifyRisk
            - name: generate_report
              activity: GenerateReport
        """)
    assert result.ok, result.problems
    assert waves(result.definition) == [["extract_data"], ["classify_risk"], ["generate_report"]]


def test_needs_form_a_graph_whose_independent_steps_share_a_wave():
    result = checked("""\
        workflow:
          id: fan-in
          description: Two lookups, then a summary.
          steps:
            - name: summarize
              needs: [crm, billing]
              llm:
                task: summary
                facts: {crm: "${{ steps.crm.output }}", billing: "${{ steps.billing.output }}"}
            - name: crm
              http: {method: GET, url: "${{ input.crm_url }}"}
            - name: billing
              http: {method: GET, url: "https://billing.example.com/v1/accounts"}
        """)
    assert result.ok, result.problems
    assert waves(result.definition) == [["crm", "billing"], ["summarize"]]


def test_schema_errors_name_file_line_column_and_field():
    found = problems("""\
        workflow:
          id: Not_Kebab
          steps:
            - name: first
              activity: ExtractApplicantData
              retry: {maximum_attempts: -1}
            - name: second
              sleep: 5m
              colour: blue
        """)
    assert "flows/example.yaml:2:7: workflow.id: String should match pattern" in found[0]
    assert any(p.startswith("flows/example.yaml:6:33: workflow.steps[0].retry.maximum_attempts:") for p in found)
    assert "flows/example.yaml:9:7: workflow.steps[1].colour: is not a field here" in found


def test_a_step_must_call_exactly_one_block():
    (found,) = problems("""\
        workflow:
          id: two-blocks
          steps:
            - name: both
              sleep: 1m
              activity: ClassifyRisk
        """)
    assert found.startswith("flows/example.yaml:4:7: workflow.steps[0]: a step calls exactly one of")
    assert "activity, sleep" in found


def test_unknown_needs_and_cycles_are_named_where_written():
    assert problems("""\
        workflow:
          id: unknown-need
          steps:
            - name: a
              needs: [nothing]
              sleep: 1s
        """) == ["flows/example.yaml:5:14: workflow.steps[0].needs: step 'a' needs 'nothing', which is no step of "
                 "this workflow"]
    (cycle,) = problems("""\
        workflow:
          id: cycle
          steps:
            - name: a
              needs: [b]
              sleep: 1s
            - name: b
              needs: [a]
              sleep: 1s
        """)
    assert cycle.startswith("flows/example.yaml:5:14: workflow.steps[0].needs:") and "cycle" in cycle


def test_expressions_must_compile_and_use_only_steps_that_ran_before():
    found = problems("""\
        workflow:
          id: expressions
          output: steps.b.output +
          steps:
            - name: a
              when: input.amount >
              http: {url: "https://api.example.com/${{ steps.b.output.id }}"}
            - name: b
              needs: [a]
              for_each: input.records
              http: {url: "https://api.example.com/${{ item.id }}", json: {first: "${{ steps.a.output }}"}}
        """)
    assert "flows/example.yaml:3:11: workflow.output: not a CEL expression (at 1:17: Syntax error: mismatched " \
        "input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, " \
        "NUM_UINT, STRING, BYTES, IDENTIFIER})" in found, found
    assert any(p.startswith("flows/example.yaml:6:13: workflow.steps[0].when: not a CEL expression") for p in found)
    assert ("flows/example.yaml:7:19: workflow.steps[0].http.url: uses steps.b, which has not run by then: "
            "add it to `needs`") in found
    assert len(found) == 3  # steps.a in b, after a: fine


def test_blocks_must_exist_and_literal_inputs_fit_the_activitys_model():
    found = problems("""\
        workflow:
          id: blocks
          input: {type: objekt}
          steps:
            - name: a
              activity: NoSuchActivity
            - name: b
              activity: ExtractFields
              input: {language: de}
            - name: c
              llm: {task: poem}
            - name: d
              workflow: {name: nowhere}
            - name: e
              llm: {prompt: "Extract the fields.", output_schema: {type: 12}}
            - name: f
              llm: {prompt: "Extract ${{ input.kind }}.", output_schema: {type: array}}
            - name: g
              activity: ExtractFields
        """)
    assert any(p.startswith("flows/example.yaml:3:10: workflow.input: not a JSON Schema") for p in found), found
    assert "flows/example.yaml:6:17: workflow.steps[0].activity: no registered activity is named 'NoSuchActivity'" \
        in found
    assert "flows/example.yaml:9:14: workflow.steps[1].input.document: Field required" in found
    assert "flows/example.yaml:11:19: workflow.steps[2].llm.task: no LLM task 'poem' (shipped: summary)" in found
    assert "flows/example.yaml:13:24: workflow.steps[3].workflow.name: no cataloged workflow is named 'nowhere'" \
        in found
    assert any(p.startswith("flows/example.yaml:15:59: workflow.steps[4].llm.output_schema: not a JSON Schema")
               for p in found), found
    assert "flows/example.yaml:17:21: workflow.steps[5].llm.prompt: the prompt is instructions only: put values " \
           "in `facts` (trusted) or `untrusted` (fenced, screened)" in found
    assert "flows/example.yaml:17:66: workflow.steps[5].llm.output_schema: the answer is one JSON object: the " \
           "schema needs `type: object`" in found
    assert "flows/example.yaml:19:17: workflow.steps[6].activity: ExtractFields takes Extract: give it an `input` " \
           "(only a step-context activity runs without one)" in found


def test_yaml_that_does_not_parse_is_one_problem_at_its_position():
    (found,) = problems("workflow:\n  id: x\n  steps: [\n")
    assert found.startswith("flows/example.yaml:4:1: (yaml): not valid YAML")


def test_the_published_json_schema_accepts_a_definition_and_refuses_a_typo():
    schema = DefinitionFile.model_json_schema(by_alias=True)
    valid = {"workflow": {"id": "x", "steps": [{"name": "a", "sleep": "5m"}]}}
    jsonschema.validate(valid, schema)
    try:
        jsonschema.validate({"workflow": {"id": "x", "steps": [{"name": "a", "slep": "5m"}]}}, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema accepted a misspelt block")


def test_the_graph_is_drawn_in_mermaid():
    definition = WorkflowDefinition.model_validate({
        "id": "drawn", "steps": [
            {"name": "fetch", "http": {"url": "https://x.example.com"}, "compensate": {"http": {"url": "https://y"}}},
            {"name": "review", "needs": ["fetch"], "approval": {"title": "OK?", "summary": "Check."},
             "when": 'input.amount > 100'},
        ]})
    assert mermaid(definition) == (
        "flowchart TD\n"
        '    fetch["fetch<br/>http: POST"]\n'
        '    review{{"review<br/>approval<br/><i>when input.amount > 100</i>"}}\n'
        "    fetch --> review\n"
        '    fetch -.->|undo| fetch_undo["http"]\n'
    )


def test_durations_read_as_written():
    assert parse_duration("1h30m").total_seconds() == 5400 and parse_duration("45s").total_seconds() == 45


# --- the tools around the format ----------------------------------------------------------------

GOOD = """\
# yaml-language-server: $schema=http://127.0.0.1:8000/v1/schemas/workflow-definition.json
workflow:
  id: fingerprint-then-notify
  description: Fingerprints documents, then tells the team.
  input: {type: object, required: [documents], properties: {documents: {type: array}}}
  steps:
    - name: fingerprint
      workflow: {name: document-fingerprint, input: {documents: "${{ input.documents }}"}}
    - name: tell
      needs: [fingerprint]
      notify: {channels: [slack], title: "Manifest ${{ steps.fingerprint.output.manifest_sha256 }}"}
"""
BAD = """\
workflow:
  id: bad
  steps:
    - name: a
      needs: [b]
      activity: nope
"""


def test_validate_exits_1_listing_every_problem_and_passes_good_files(tmp_path, capsys):
    from steward.cli import main

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok (fingerprint-then-notify, 2 steps)\n"
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [f"{bad}:5:14: workflow.steps[0].needs: step 'a' needs 'b', which is no step of this workflow",
                       f"{bad}:6:17: workflow.steps[0].activity: no registered activity is named 'nope'"]
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2


def test_graph_prints_mermaid_for_a_good_file_and_the_problems_for_a_bad_one(tmp_path, capsys):
    from steward.cli import main

    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    assert main(["graph", str(tmp_path / "good.yaml")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "flowchart TD", '    fingerprint["fingerprint<br/>workflow: document-fingerprint"]', '    tell["tell<br/>notify"]',
        "    fingerprint --> tell"]
    assert main(["graph", str(tmp_path / "bad.yaml")]) == 1
    assert "no registered activity is named 'nope'" in capsys.readouterr().err


async def test_the_schema_is_published_for_editors_without_credentials(http):
    response = await http.get("/v1/schemas/workflow-definition.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["$id"].endswith("/v1/schemas/workflow-definition.json")
    import yaml

    jsonschema.validate(yaml.safe_load(GOOD), schema)
    with_typo = yaml.safe_load(GOOD.replace("needs:", "need:"))
    try:
        jsonschema.validate(with_typo, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the published schema accepted `need:`")
