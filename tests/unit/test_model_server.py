"""The scripted model server (tests/support/model_server.py) against the real openai client and SDK models."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import openai
import pytest
from agents import ModelSettings, function_tool
from agents.models.interface import ModelTracing
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel

from tests.support.model_server import ScriptedModelServer, call, calls_step, text_step

REPO = Path(__file__).resolve().parents[2]


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up an order."""
    return order_id


@function_tool
def list_orders(customer_email: str) -> str:
    """List orders."""
    return customer_email


def _model(api, server):
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    cls = OpenAIResponsesModel if api == "responses" else OpenAIChatCompletionsModel
    return cls(model="scripted-model", openai_client=client)


def _ask(model, input, tools=(lookup_order, list_orders)):
    return model.get_response(None, input, ModelSettings(), list(tools), None, [], ModelTracing.DISABLED,
                              previous_response_id=None, conversation_id=None, prompt=None)


def _outputs(response):
    return [(item.type, getattr(item, "name", None), getattr(item, "call_id", None)) for item in response.output]


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_parallel_calls_then_text_and_retries_get_the_same_answer(api):
    script = [calls_step(call("lookup_order", {"order_id": "ORD-1"}),
                         call("list_orders", {"customer_email": "a@b.co"})),
              text_step("All done.", usage={"input": 11, "output": 7})]
    with ScriptedModelServer(script) as server:
        model = _model(api, server)

        async def conversation():
            first = await _ask(model, "help")
            retried = await _ask(model, "help")
            items = [{"role": "user", "content": "help"}, *first.to_input_items()]
            items += [{"type": "function_call_output", "call_id": item.call_id, "output": "ok"}
                      for item in first.output]
            final = await _ask(model, items)
            return first, retried, final

        first, retried, final = asyncio.run(conversation())
    assert _outputs(first) == [("function_call", "lookup_order", "call_0_0"),
                               ("function_call", "list_orders", "call_0_1")]
    assert _outputs(retried) == _outputs(first)
    assert json.loads(first.output[0].arguments) == {"order_id": "ORD-1"}
    assert final.output[0].content[0].text == "All done."
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (11, 7, 18)
    assert first.usage.total_tokens > 0 and first.request_id == "req_scripted_1"
    assert [r["step"] for r in server.requests] == [0, 0, 1]
    expected_path = "/v1/responses" if api == "responses" else "/v1/chat/completions"
    assert {r["path"] for r in server.requests} == {expected_path}
    assert server.requests[0]["body"]["model"] == "scripted-model"


def test_when_matchers_and_json_steps():
    script = [
        text_step("refund path", when={"userContains": "REFUND"}),
        {"json": {"approved": True}, "when": {"lastToolOutputContains": "approve-me"}},
        text_step("default"),
    ]
    with ScriptedModelServer(script) as server:
        model = _model("responses", server)

        async def run():
            return (await _ask(model, "please refund it"), await _ask(model, "hello"),
                    await _ask(model, [{"role": "user", "content": "x"},
                                       {"type": "function_call", "call_id": "c", "name": "lookup_order",
                                        "arguments": "{}"},
                                       {"type": "function_call_output", "call_id": "c", "output": "approve-me"}]))

        refund, default, structured = asyncio.run(run())
    assert refund.output[0].content[0].text == "refund path"
    assert default.output[0].content[0].text == "default"
    assert json.loads(structured.output[0].content[0].text) == {"approved": True}
    assert [r["step"] for r in server.requests] == [0, 2, 1]


def test_calls_to_tools_not_offered_are_a_400():
    with ScriptedModelServer([calls_step(call("refund_order", {}))]) as server:
        model = _model("chat_completions", server)
        with pytest.raises(openai.BadRequestError, match="does not offer"):
            asyncio.run(_ask(model, "hi"))
    assert server.requests[0]["status"] == 400


def test_failures_are_consumed_in_order():
    script = [text_step("ok", failures=[{"status": 500, "times": 2}, {"status": 429, "headers": {"retry-after": "3"}}])]
    with ScriptedModelServer(script) as server:
        model = _model("responses", server)

        async def attempts():
            outcomes = []
            for _ in range(4):
                try:
                    outcomes.append((await _ask(model, "hi")).output[0].content[0].text)
                except openai.APIStatusError as exc:
                    outcomes.append((exc.status_code, exc.response.headers.get("retry-after")))
            return outcomes

        outcomes = asyncio.run(attempts())
    assert outcomes == [(500, None), (500, None), (429, "3"), "ok"]


def test_invalid_scripts_are_refused():
    with pytest.raises(ValueError):
        ScriptedModelServer([])
    with pytest.raises(ValueError, match="none of"):
        ScriptedModelServer([{"delay": 1}])


def test_runs_as_a_separate_process(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"steps": [text_step("from another process")]}))
    record = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.model_server", "--script", str(script), "--port", "0",
         "--record", str(record)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(line.split()[1])
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)
        response = client.responses.create(model="m", input="hi")
        assert response.output_text == "from another process"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_requests", timeout=10) as answer:
            recorded = json.loads(answer.read())
        assert [(r["path"], r["step"], r["status"]) for r in recorded] == [("/v1/responses", 0, 200)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[0]["body"]["input"] == "hi"


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_instructions_contain_tells_the_agents_of_a_workflow_apart(api):
    script = [text_step("I am the judge", when={"instructionsContain": "You JUDGE drafts"}),
              text_step("I am the writer", when={"instructionsContain": "you write"}), text_step("anyone")]
    with ScriptedModelServer(script) as server:
        model = _model(api, server)

        async def ask(instructions):
            return await model.get_response(instructions, "hi", ModelSettings(), [], None, [], ModelTracing.DISABLED,
                                            previous_response_id=None, conversation_id=None, prompt=None)

        async def run():
            return [await ask("You judge drafts."), await ask("You write drafts."), await ask(None)]

        answers = asyncio.run(run())
    assert [a.output[0].content[0].text for a in answers] == ["I am the judge", "I am the writer", "anyone"]
