"""The "What works" table (docs/sdk-features.md), one test per row: each OpenAI Agents SDK feature run through the
local runtime (a separate process hosting tests/fixtures/sdk_app) with the real OpenAI client in ``invoke_model``
talking to the scripted model server, on both APIs (``OPENAI_API``: ``responses``, ``chat_completions``).

One model server and two runtime processes per API: ``cached`` (the default live-run cache) and ``uncached``
(``AGENT_RUN_CACHE_SIZE=0``: every episode replays the run from history with a fresh worker). Every run is
started by the fixture at once, so the runs proceed in parallel; each test then waits for its own. A run's user
text carries a tag (``[sdk-x]``) that the model server's script matches; runs on the uncached runtime also carry
``#nocache``, which tells their model requests apart.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from durable_agents._timeline import ARCHIVE_ACTIVITY
from tests.integration.conftest import REVIEWER, SUPPORT_USER, http
from tests.support.model_server import ScriptedModelServer
from tests.support.parallel import started_together
from tests.support.polling import wait_for
from tests.support.runtime_process import REPO_ROOT, RuntimeProcess

pytestmark = pytest.mark.integration

APP_DIR = REPO_ROOT / "tests" / "fixtures" / "sdk_app"
NOCACHE = "#nocache"


def step(tag: str, outputs: int | None = None, *, instructions: str | None = None, **fields: Any) -> dict[str, Any]:
    """A script step for the conversation tagged ``tag`` after ``outputs`` tool outputs (any number: ``None``),
    optionally only for the agent whose instructions contain ``instructions``."""
    when: dict[str, Any] = {"userContains": tag}
    if outputs is not None:
        when["toolOutputs"] = outputs
    if instructions is not None:
        when["instructionsContain"] = instructions
    return {"when": when, **fields}


def calls(*items: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``calls`` of a step: ``(tool name, arguments)`` pairs."""
    return [{"name": name, "arguments": args} for name, args in items]


SCRIPT: list[dict[str, Any]] = [
    # Agents whose model request does not hold the run's user text come first (matched by instructions only).
    {"when": {"instructionsContain": "translator agent"}, "text": "Bonjour le monde"},
    step("[sdk-hello]", 0, text="Hello from the scripted model."),
    step("[sdk-dynamic]", 0, text="Hello Ada!"),
    step("[sdk-activity]", 0, calls=calls(("multiply", {"a": 6, "b": 7}))),
    step("[sdk-activity]", 1, text="6 x 7 = 42."),
    step("[sdk-function]", 0, calls=calls(("shout", {"text": "quiet please"}))),
    step("[sdk-function]", 1, text="Done shouting."),
    step("[sdk-parallel]", 0, calls=calls(("multiply", {"a": 2, "b": 3}), ("multiply", {"a": 4, "b": 5}),
                                          ("shout", {"text": "both"}))),
    step("[sdk-parallel]", 3, text="6 and 20."),
    step("[sdk-usage]", 0, calls=calls(("multiply", {"a": 1, "b": 1})), usage={"input": 11, "output": 7}),
    step("[sdk-usage]", 1, text="1.", usage={"input": 13, "output": 5}),
    step("[sdk-weather]", 0, json={"city": "Oslo", "temperature_c": -3.5, "summary": "Snow"}),
    step("[sdk-account]", 0, calls=calls(("whoami", {}))),
    step("[sdk-account]", 1, text="You are Ada."),
    step("[sdk-tuned]", 0, calls=calls(("multiply", {"a": 3, "b": 3}))),
    step("[sdk-tuned]", 1, text="9."),
    step("[sdk-loop]", 0, calls=calls(("multiply", {"a": 2, "b": 2}))),
    step("[sdk-loop]", 1, calls=calls(("multiply", {"a": 4, "b": 4}))),
    step("[sdk-loop]", None, calls=calls(("multiply", {"a": 16, "b": 16}))),
    *[step("[sdk-long]", i, calls=calls(("multiply", {"a": i, "b": 2}))) for i in range(12)],
    step("[sdk-long]", 12, text="Twelve products done."),
    *[step("[sdk-limited]", i, calls=calls(("multiply", {"a": 3, "b": i}))) for i in range(3)],
    step("[sdk-converted]", 0, calls=calls(("echo", {"text": "durable"}))),
    step("[sdk-converted]", 1, text="It echoed."),
    step("[sdk-stream]", None, text="Streamed."),
    step("[sdk-guard-in]", None, text="I will not repeat it."),
    step("[sdk-guard-out]", None, text="The code is TOPSECRET."),
    step("[sdk-guard-ok]", None, text="All clear."),
    step("[sdk-hooks]", 0, calls=calls(("multiply", {"a": 5, "b": 5}))),
    step("[sdk-hooks]", 1, text="25."),
    step("[sdk-approve]", 0, calls=calls(("archive_file", {"path": "/data/report.txt"}))),
    step("[sdk-approve]", 1, text="Archived."),
    step("[sdk-reject]", 0, calls=calls(("archive_file", {"path": "/data/keep.txt"}))),
    step("[sdk-reject]", 1, text="Not archived."),
    step("[sdk-approve-fn]", 0, calls=calls(("forget", {"topic": "lunch"}))),
    step("[sdk-approve-fn]", 1, text="Forgotten."),
    step("[sdk-handoff]", None, instructions="billing agent", text="Invoice 42 is paid."),
    step("[sdk-handoff]", 0, calls=calls(("transfer_to_billing", {}))),
    step("[sdk-as-tool]", 0, calls=calls(("translate", {"input": "Hello world"}))),
    step("[sdk-as-tool]", 1, text="In French: Bonjour le monde."),
    step("[sdk-gather]", None, instructions="poet agent", text="Roses are red, runs are durable."),
    step("[sdk-gather]", None, instructions="critic agent", text="A fine couplet."),
]


def call_id(tag: str, outputs: int, k: int = 0) -> str:
    """The id the model server gives the ``k``-th call of the step of ``tag`` after ``outputs`` tool outputs
    (``call_<step index>_<k>``, tests/support/model_server.py)."""
    [index] = [i for i, s in enumerate(SCRIPT) if s.get("when", {}).get("userContains") == tag
               and s["when"].get("toolOutputs") == outputs and "calls" in s]
    return f"call_{index}_{k}"


@dataclass(frozen=True)
class RunSpec:
    """One run the fixture starts: the agent's API name and the user text."""

    agent: str
    text: str


RUNS: dict[str, RunSpec] = {
    "hello": RunSpec("hello", "Say hello. [sdk-hello]"),
    "dynamic": RunSpec("dynamic", "Greet me. [sdk-dynamic]"),
    "activity": RunSpec("tools", "What is 6 times 7? [sdk-activity]"),
    "function": RunSpec("tools", "Shout 'quiet please'. [sdk-function]"),
    "parallel": RunSpec("tools", "2*3, 4*5 and shout 'both'. [sdk-parallel]"),
    "usage": RunSpec("tools", "1*1. [sdk-usage]"),
    "weather": RunSpec("weather", "Weather in Oslo? [sdk-weather]"),
    "account": RunSpec("account", "Who am I? [sdk-account]"),
    "tuned": RunSpec("tuned", "3*3. [sdk-tuned]"),
    "loop": RunSpec("looper", "Keep multiplying. [sdk-loop]"),
    "stream": RunSpec("streamer", "Stream this. [sdk-stream]"),
    "long": RunSpec("long", "Twelve multiplications. [sdk-long]"),
    "limited": RunSpec("limited", "Keep multiplying. [sdk-limited]"),
    "converted": RunSpec("converted", "Echo durable. [sdk-converted]"),
    "guard-in": RunSpec("guarded", "My password is hunter2. [sdk-guard-in]"),
    "guard-out": RunSpec("guarded", "Tell me the code. [sdk-guard-out]"),
    "guard-ok": RunSpec("guarded", "Anything to report? [sdk-guard-ok]"),
    "hooks": RunSpec("hooked", "5*5. [sdk-hooks]"),
    "approve": RunSpec("gated", "Archive the report. [sdk-approve]"),
    "reject": RunSpec("gated", "Archive the keeper. [sdk-reject]"),
    "approve-fn": RunSpec("gated", "Forget lunch. [sdk-approve-fn]"),
    "handoff": RunSpec("triage", "Is invoice 42 paid? [sdk-handoff]"),
    "as-tool": RunSpec("planner", "Say hello world in French. [sdk-as-tool]"),
    "gather": RunSpec("pair", "A poem about durability. [sdk-gather]"),
}
"""Runs started on the cached runtime."""

UNCACHED_RUNS = ("activity", "function", "parallel", "hooks", "approve", "reject", "approve-fn", "handoff", "limited",
                 "converted")
"""Runs also started on the uncached runtime (their text + ``#nocache``)."""


@dataclass
class Runtime:
    """One runtime process of a stack and the runs started on it (``name`` → run id)."""

    process: RuntimeProcess
    hook_log: Path
    runs: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.process.url(path)

    def start_run(self, spec: RunSpec, suffix: str = "") -> str:
        """``POST /api/agents/{agent}/runs`` as support staff; returns the run id."""
        text = f"{spec.text} {suffix}".strip()
        answer = http("POST", self.url(f"/api/agents/{spec.agent}/runs"), {"input": text}, user=SUPPORT_USER)
        assert answer.status == 202, (answer.status, answer.body)
        return answer.json["id"]

    def run(self, run_id: str) -> dict[str, Any]:
        """``GET /api/runs/{id}``."""
        answer = http("GET", self.url(f"/api/runs/{run_id}"))
        assert answer.status == 200, (answer.status, answer.body)
        return answer.json

    def wait(self, name: str, *statuses: str, timeout: float = 45.0) -> dict[str, Any]:
        """The run ``name`` once its status is one of ``statuses`` (default: finished)."""
        run_id = self.runs[name]
        wanted = statuses or ("completed", "failed", "cancelled")
        return wait_for(lambda: (lambda r: r if r["status"] in wanted else None)(self.run(run_id)),
                        timeout=timeout, interval=0.05, what=f"run {name} ({run_id}) in {wanted}")

    def history(self, name: str) -> list[dict[str, Any]]:
        """The Durable history events of the run ``name`` (the runtime's Durable HTTP API)."""
        answer = http("GET", self.url(f"/runtime/webhooks/durabletask/instances/{self.runs[name]}"
                                      "?showHistory=true&showHistoryOutput=true"))
        assert answer.status == 200, (answer.status, answer.body)
        return answer.json["historyEvents"]

    def activities(self, name: str) -> list[str]:
        """Names of the activities the run ``name`` completed, in history order (without the timeline archive of
        the previous generation, which a generation's first step carries)."""
        return [e["FunctionName"] for e in self.history(name)
                if e["EventType"] == "TaskCompleted" and e["FunctionName"] != ARCHIVE_ACTIVITY]


class Stack:
    """The scripted model server and the two runtimes (``cached``, ``uncached``) for one ``api``."""

    def __init__(self, tmp: Path, api: str):
        self.api = api
        self.model = ScriptedModelServer(SCRIPT).start()
        settings = {
            "OPENAI_BASE_URL": self.model.base_url,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_API": api,
            "AGENT_MODEL": "scripted-model",
            "AZURE_OPENAI_ENDPOINT": "",
            "APPROVAL_TIMEOUT": "P1D",
            "AUDIT_PATH": str(tmp / "audit.sqlite3"),
        }
        self.cached = self._runtime(tmp, "cached", settings)
        self.uncached = self._runtime(tmp, "uncached", {**settings, "AGENT_RUN_CACHE_SIZE": "0"})
        starters = [threading.Thread(target=rt.process.start) for rt in (self.cached, self.uncached)]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join()
        for rt in (self.cached, self.uncached):
            assert rt.process.running, rt.process.log_tail()
        for name, spec in RUNS.items():
            self.cached.runs[name] = self.cached.start_run(spec)
        for name in UNCACHED_RUNS:
            self.uncached.runs[name] = self.uncached.start_run(RUNS[name], NOCACHE)

    @staticmethod
    def _runtime(tmp: Path, label: str, settings: dict[str, str]) -> Runtime:
        hook_log = tmp / f"hooks-{label}.log"
        process = RuntimeProcess(APP_DIR, state=tmp / f"state-{label}.sqlite3",
                                 env={**settings, "SDK_APP_HOOK_LOG": str(hook_log)},
                                 log_path=tmp / f"runtime-{label}.log")
        return Runtime(process, hook_log)

    @property
    def responses(self) -> bool:
        return self.api == "responses"

    def requests(self, tag: str, *, cached: bool = True) -> list[dict[str, Any]]:
        """The request bodies the model server received for conversations tagged ``tag`` (arrival order), of the
        cached runtime's runs or of the uncached runtime's (``#nocache``)."""
        bodies = [r["body"] for r in self.model.requests if tag in json.dumps(r["body"])]
        return [b for b in bodies if (NOCACHE in json.dumps(b)) != cached]

    def close(self) -> None:
        try:
            for rt in (self.cached, self.uncached):
                rt.process.stop()
        finally:
            self.model.stop()


APIS = ("responses", "chat_completions")


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """Both APIs' stacks, built at once (four runtime processes start in parallel: the file's wall time is about
    one runtime start plus the slowest run)."""
    with started_together({api: (lambda api=api: Stack(tmp_path_factory.mktemp(f"sdk-{api}"), api))
                           for api in APIS}) as built:
        yield built


@pytest.fixture(params=APIS)
def stack(request, stacks):
    """The stack of one API (``OPENAI_API``); every test runs on both."""
    return stacks[request.param]


# ---------------- reading what the model server received (both APIs) ----------------
def instructions_of(body: dict[str, Any]) -> str:
    """The agent's instructions in a request: Responses ``instructions``, Chat the first system message."""
    if "instructions" in body or "input" in body:
        return str(body.get("instructions") or "")
    return next((str(m["content"]) for m in body["messages"] if m.get("role") in ("system", "developer")), "")


def tool_outputs_of(body: dict[str, Any]) -> list[str]:
    """The tool results in a request, in order: ``function_call_output`` items / ``tool`` messages."""
    if "input" in body:
        return [str(i["output"]) for i in body["input"]
                if isinstance(i, dict) and i.get("type") == "function_call_output"]
    return [str(m["content"]) for m in body["messages"] if m.get("role") == "tool"]


def user_texts_of(body: dict[str, Any]) -> list[str]:
    """The user messages in a request."""
    items = body["input"] if "input" in body else body["messages"]
    if isinstance(items, str):
        return [items]
    return [str(i["content"]) for i in items if isinstance(i, dict) and i.get("role") == "user"]


def tools_offered(body: dict[str, Any]) -> list[str]:
    """Names of the function tools a request offers."""
    return sorted(t.get("name") or t["function"]["name"] for t in body.get("tools") or [])


def scheduled(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(scheduled time, activity name)`` of every completed activity, in history order. The history the Durable
    HTTP API shows has no ``TaskScheduled`` events; the ``ScheduledTime`` of a completion is the time of the episode
    that scheduled it, so equal times mean one episode (one fan-out)."""
    return [(e["ScheduledTime"], e["FunctionName"]) for e in history if e["EventType"] == "TaskCompleted"]


def episodes(history: list[dict[str, Any]]) -> int:
    """Number of orchestrator episodes of a finished run that waited only on activities: one per distinct
    ``ScheduledTime`` (each scheduled the next activities), plus the one that finished the run."""
    return len({time for time, _ in scheduled(history)}) + 1


def runtime_of(stack: Stack, cached: bool) -> Runtime:
    return stack.cached if cached else stack.uncached


CACHE = pytest.mark.parametrize("cached", [True, False], ids=["cache-on", "cache-off"])
"""Run the test on the cached runtime and on the uncached one (live-run cache off)."""


# ---------------- the rows ----------------
def test_hello_world_runs_one_model_call(stack):
    run = stack.cached.wait("hello")
    assert run["status"] == "completed", run
    assert run["output"] == "Hello from the scripted model."
    assert run["lastAgent"] == "hello" and run["turns"] == 1 and run["demo"] is False
    [body] = stack.requests("[sdk-hello]")
    assert body["model"] == "scripted-model"
    assert instructions_of(body) == "You are the hello agent. Answer in one sentence."
    assert user_texts_of(body) == ["Say hello. [sdk-hello]"]
    paths = {r["path"] for r in stack.model.requests if "[sdk-hello]" in json.dumps(r["body"])}
    assert paths == {"/v1/responses" if stack.responses else "/v1/chat/completions"}
    assert stack.cached.activities("hello") == ["invoke_model"]


def test_dynamic_instructions_callable_reads_the_run_context(stack):
    run = stack.cached.wait("dynamic")
    assert run["status"] == "completed", run
    assert run["output"] == "Hello Ada!"
    [body] = stack.requests("[sdk-dynamic]")
    assert instructions_of(body) == "You are the dynamic agent. Greet Ada by name."


@CACHE
def test_activity_tool_runs_as_an_activity(stack, cached):
    rt = runtime_of(stack, cached)
    run = rt.wait("activity")
    assert run["status"] == "completed", run
    assert run["output"] == "6 x 7 = 42." and run["turns"] == 2
    assert rt.activities("activity") == ["invoke_model", "multiply", "invoke_model"]
    first, second = stack.requests("[sdk-activity]", cached=cached)
    assert tools_offered(first) == ["multiply", "shout"]
    [output] = tool_outputs_of(second)
    assert json.loads(output) == {"product": 42, "callId": call_id("[sdk-activity]", 0), "runId": rt.runs["activity"]}


@CACHE
def test_function_tool_runs_inside_the_orchestrator(stack, cached):
    rt = runtime_of(stack, cached)
    run = rt.wait("function")
    assert run["status"] == "completed", run
    assert run["output"] == "Done shouting."
    assert rt.activities("function") == ["invoke_model", "invoke_model"]  # no activity for the function tool
    _, second = stack.requests("[sdk-function]", cached=cached)
    assert tool_outputs_of(second) == ["SHOUTED: QUIET PLEASE"]


@CACHE
def test_parallel_tool_calls_of_one_turn_are_one_fan_out(stack, cached):
    rt = runtime_of(stack, cached)
    run = rt.wait("parallel")
    assert run["status"] == "completed", run
    assert run["output"] == "6 and 20."
    steps = scheduled(rt.history("parallel"))
    assert [name for _, name in steps] == ["invoke_model", "multiply", "multiply", "invoke_model"]
    assert steps[1][0] == steps[2][0]  # both multiply activities scheduled in the same episode
    _, second = stack.requests("[sdk-parallel]", cached=cached)
    outputs = tool_outputs_of(second)
    assert [json.loads(o)["product"] for o in outputs[:2]] == [6, 20]
    assert outputs[2] == "SHOUTED: BOTH"


@CACHE
def test_handoff_moves_the_run_to_the_other_agent(stack, cached):
    rt = runtime_of(stack, cached)
    run = rt.wait("handoff")
    assert run["status"] == "completed", run
    assert run["output"] == "Invoice 42 is paid." and run["lastAgent"] == "billing"
    first, second = stack.requests("[sdk-handoff]", cached=cached)
    assert tools_offered(first) == ["transfer_to_billing"]
    assert instructions_of(first).startswith("You are the triage agent.")
    assert instructions_of(second).startswith("You are the billing agent.")
    assert tool_outputs_of(second) == [json.dumps({"assistant": "billing"})]
    assert rt.activities("handoff") == ["invoke_model", "invoke_model"]


def test_agent_as_tool_runs_a_nested_agent_with_its_own_model_call(stack):
    run = stack.cached.wait("as-tool")
    assert run["status"] == "completed", run
    assert run["output"] == "In French: Bonjour le monde." and run["lastAgent"] == "planner"
    assert run["turns"] == 3 and run["usage"]["requests"] == 3
    first, second = stack.requests("[sdk-as-tool]")
    assert tools_offered(first) == ["translate"]
    assert tool_outputs_of(second) == ["Bonjour le monde"]
    nested = [r["body"] for r in stack.model.requests
              if instructions_of(r["body"]).startswith("You are the translator")]
    assert [user_texts_of(b) for b in nested] == [["Hello world"]]
    assert stack.cached.activities("as-tool") == ["invoke_model"] * 3


def test_input_guardrail_tripwire_fails_the_run_before_any_model_call(stack):
    run = stack.cached.wait("guard-in")
    assert run["status"] == "failed", run
    assert run["error"] == "Guardrail InputGuardrail triggered tripwire"
    assert stack.requests("[sdk-guard-in]") == []
    assert stack.cached.activities("guard-in") == []


def test_output_guardrail_tripwire_fails_the_run_after_the_model_answered(stack):
    run = stack.cached.wait("guard-out")
    assert run["status"] == "failed", run
    assert run["error"] == "Guardrail OutputGuardrail triggered tripwire"
    assert len(stack.requests("[sdk-guard-out]")) == 1
    ok = stack.cached.wait("guard-ok")
    assert ok["status"] == "completed" and ok["output"] == "All clear.", ok


def test_structured_output_is_the_runs_json_output(stack):
    run = stack.cached.wait("weather")
    assert run["status"] == "completed", run
    assert run["output"] == {"city": "Oslo", "temperature_c": -3.5, "summary": "Snow"}
    [body] = stack.requests("[sdk-weather]")
    if stack.responses:
        fmt = body["text"]["format"]
        assert fmt["type"] == "json_schema" and fmt["strict"] is True
        schema = fmt["schema"]
    else:
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
        schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["city", "temperature_c", "summary"] and schema["title"] == "Weather"


@CACHE
def test_run_hooks_and_agent_hooks_are_called(stack, cached):
    rt = runtime_of(stack, cached)
    run = rt.wait("hooks")
    assert run["status"] == "completed", run
    output = run["output"]
    assert output["final"] == "25."
    assert output["runHooks"] == [
        "agent_start:hooked", "llm_start:hooked", "llm_end:hooked", "tool_start:hooked:multiply",
        "tool_end:hooked:multiply", "llm_start:hooked", "llm_end:hooked", "agent_end:hooked",
    ]
    tool_result = json.dumps({"product": 25, "callId": call_id("[sdk-hooks]", 0), "runId": rt.runs["hooks"]})
    assert output["agentHooks"] == ["start:hooked", "tool_start:multiply", f"tool_end:multiply:{tool_result}",
                                    "end:hooked"]
    # A hook's side effect outside the run happens once per worker that runs the agent: once with the cache on,
    # once per episode with it off (every episode replays the run from history).
    calls_of_on_start = rt.hook_log.read_text().split().count(rt.runs["hooks"])
    assert calls_of_on_start == (1 if cached else episodes(rt.history("hooks")))
    if not cached:
        assert calls_of_on_start >= 3


def _decide(rt: Runtime, name: str, approved: bool, comment: str) -> dict[str, Any]:
    """Wait for the run's one pending approval, decide it as the reviewer over HTTP; returns the pending item."""
    run = rt.wait(name, "awaiting_approval")
    [pending] = run["pendingApprovals"]
    answer = http("POST", rt.url(f"/api/runs/{rt.runs[name]}/approvals/{pending['id']}"),
                  {"approved": approved, "comment": comment}, user=REVIEWER)
    assert answer.status == 202, (answer.status, answer.body)
    assert answer.json["decision"] == ("approved" if approved else "rejected")
    return pending


@CACHE
def test_needs_approval_tool_runs_after_an_approval_over_http(stack, cached):
    rt = runtime_of(stack, cached)
    pending = _decide(rt, "approve", True, "Fine.")
    assert pending["tool"] == "archive_file" and pending["arguments"] == {"path": "/data/report.txt"}
    run = rt.wait("approve")
    assert run["status"] == "completed", run
    assert run["output"] == "Archived."
    assert [a["decision"] for a in run["approvals"]] == ["approved"]
    assert rt.activities("approve") == ["invoke_model", "durable_agents_audit", "archive_file", "invoke_model"]
    _, second = stack.requests("[sdk-approve]", cached=cached)
    assert [json.loads(o) for o in tool_outputs_of(second)] == [{"archived": "/data/report.txt"}]


@CACHE
def test_needs_approval_function_tool_runs_after_an_approval_over_http(stack, cached):
    rt = runtime_of(stack, cached)
    pending = _decide(rt, "approve-fn", True, "Go ahead.")
    assert pending["tool"] == "forget" and pending["arguments"] == {"topic": "lunch"}
    run = rt.wait("approve-fn")
    assert run["status"] == "completed", run
    assert run["output"] == "Forgotten."
    assert rt.activities("approve-fn") == ["invoke_model", "durable_agents_audit", "invoke_model"]
    _, second = stack.requests("[sdk-approve-fn]", cached=cached)
    assert tool_outputs_of(second) == ["forgot lunch"]


@CACHE
def test_needs_approval_tool_rejected_over_http_is_not_run(stack, cached):
    rt = runtime_of(stack, cached)
    _decide(rt, "reject", False, "Keep it.")
    run = rt.wait("reject")
    assert run["status"] == "completed", run
    assert run["output"] == "Not archived."
    assert "archive_file" not in rt.activities("reject")
    _, second = stack.requests("[sdk-reject]", cached=cached)
    assert tool_outputs_of(second) == [
        "The call to 'archive_file' was rejected by the reviewer and was not run. Reviewer's comment: Keep it."]


def test_run_context_object_reaches_function_tools_and_keeps_their_changes(stack):
    run = stack.cached.wait("account")
    assert run["status"] == "completed", run
    assert run["output"] == {"final": "You are Ada.", "visits": 1}
    _, second = stack.requests("[sdk-account]")
    assert tool_outputs_of(second) == ["user=Ada tier=gold visits=1"]


def test_max_turns_exceeded_fails_the_run(stack):
    run = stack.cached.wait("loop")
    assert run["status"] == "failed", run
    assert run["error"] == "Max turns (2) exceeded"
    assert len(stack.requests("[sdk-loop]")) == 2
    # Both turns ran their tool; the SDK raises at the start of the third turn, before its model call.
    assert stack.cached.activities("loop") == ["invoke_model", "multiply", "invoke_model", "multiply"]


def test_agent_max_turns_replaces_the_sdks_default_of_ten(stack):
    run = stack.cached.wait("long", timeout=90.0)
    assert run["status"] == "completed", run
    assert run["output"] == "Twelve products done." and run["turns"] == 13
    # 13 turns continue as new every AGENT_TURNS_PER_GENERATION (2) turns: the last generation's history ends the
    # run's one sequence of 12 tool turns and the answer
    last = stack.cached.activities("long")
    assert last and last == (["invoke_model", "multiply"] * 12 + ["invoke_model"])[-len(last):] and len(last) <= 5


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "cache-off"])
def test_a_max_turns_error_handler_ends_the_run_with_its_message(stack, cached):
    runtime = stack.cached if cached else stack.uncached
    run = runtime.wait("limited")
    assert run["status"] == "completed", run
    assert run["output"] == "Out of turns: a person will take it from here."
    assert runtime.activities("limited") == ["invoke_model", "multiply", "invoke_model", "multiply"]


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "cache-off"])
def test_a_function_tool_turned_into_an_activity_runs_as_an_activity(stack, cached):
    runtime = stack.cached if cached else stack.uncached
    run = runtime.wait("converted")
    assert run["status"] == "completed", run
    assert run["output"] == "It echoed."
    assert runtime.activities("converted") == ["invoke_model", "echo", "invoke_model"]
    second = stack.requests("[sdk-converted]", cached=cached)[1]
    assert tool_outputs_of(second) == ["ECHO: durable"]


def test_asyncio_gather_of_two_runs_schedules_both_model_calls_together(stack):
    run = stack.cached.wait("gather")
    assert run["status"] == "completed", run
    assert run["output"] == {"poem": "Roses are red, runs are durable.", "review": "A fine couplet."}
    steps = scheduled(stack.cached.history("gather"))
    assert [name for _, name in steps] == ["invoke_model", "invoke_model"]
    assert steps[0][0] == steps[1][0]  # one fan-out: both scheduled by the first episode
    bodies = stack.requests("[sdk-gather]")
    assert sorted(instructions_of(b).split(".")[0] for b in bodies) == ["You are the critic agent",
                                                                       "You are the poet agent"]


def test_model_settings_reach_the_request(stack):
    run = stack.cached.wait("tuned")
    assert run["status"] == "completed", run
    assert run["output"] == "9."
    first, second = stack.requests("[sdk-tuned]")
    max_tokens = "max_output_tokens" if stack.responses else "max_tokens"
    for body in (first, second):
        assert body["temperature"] == 0.25 and body["top_p"] == 0.5 and body[max_tokens] == 64
    assert first["tool_choice"] == "required"
    assert "tool_choice" not in second  # the SDK resets tool_choice after a tool call (reset_tool_choice)


def test_usage_totals_add_up_every_model_call(stack):
    run = stack.cached.wait("usage")
    assert run["status"] == "completed", run
    assert run["usage"] == {"requests": 2, "inputTokens": 24, "outputTokens": 12, "totalTokens": 36}


def test_run_streamed_runs_durably_with_item_level_events(stack):
    run = stack.cached.wait("stream")
    assert run["status"] == "completed", run
    assert run["output"] == {"final": "Streamed.", "events": [
        "agent_updated_stream_event", "raw_response_event", "run_item_stream_event"]}
    assert len(stack.requests("[sdk-stream]")) == 1  # one model call, a whole response (no token stream)
    assert stack.cached.activities("stream") == ["invoke_model"]
    # the run's event stream carries the same item: the model turn whose message the stream yielded
    answer = http("GET", stack.cached.url(f"/api/runs/{stack.cached.runs['stream']}/events?wait=0"))
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/event-stream"), answer.status
    blocks = [dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
              for block in answer.body.decode().split("\n\n") if block.strip()]
    turns = [json.loads(b["data"]) for b in blocks if b.get("event") == "model_turn"]
    assert [t["text"] for t in turns] == ["Streamed."] and turns[0]["agent"] == "streamer"
    assert [b.get("event") for b in blocks if "id" in b][-1] == "output"
