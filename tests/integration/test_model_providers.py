"""Registered model providers on the local runtime (tests/fixtures/provider_app), both APIs, cache on and off.

The fixture's provider talks to the scripted model server with its own key (``Bearer provider-key-1``) and model
names ``provider:<name>``; the built-in API uses ``test-key`` and
``AGENT_MODEL``. So every request the server records says which one made it. Per API, one model server and two
runtime processes: ``cached`` (the default live-run cache) and ``uncached`` (cache off: every episode replays the
run from history with a fresh worker; their runs' text carries ``#nocache``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SUPPORT_USER, http
from tests.support.model_server import ScriptedModelServer, call
from tests.support.parallel import started_together
from tests.support.polling import wait_for
from tests.support.runtime_process import REPO_ROOT, RuntimeProcess

APP_DIR = REPO_ROOT / "tests" / "fixtures" / "provider_app"
NOCACHE = "#nocache"
PROVIDER_KEY = "provider-key-1"

SCRIPT = [
    {"when": {"toolOutputs": 0, "instructionsContain": "Use lookup"}, "calls": [call("lookup", {"key": "k1"})]},
    {"when": {"toolOutputs": 1}, "text": "Looked up k1."},
    {"text": "Plain answer."},
]

RUNS = {  # name -> (agent, text)
    "provider": ("via_provider", "Look k1 up."),
    "prefix": ("via_prefix", "Look k1 up."),
    "model": ("via_model", "Look k1 up."),
    "plain": ("plain", "Look k1 up."),
    "unregistered": ("unregistered", "Hello."),
}
UNCACHED_RUNS = ("provider", "prefix", "model")
TAGS = {"provider": "[prov-run]", "prefix": "[prov-prefix]", "model": "[prov-model]", "plain": "[prov-plain]",
        "unregistered": "[prov-unregistered]"}


@dataclass
class Runtime:
    process: RuntimeProcess
    runs: dict[str, str] = field(default_factory=dict)

    def start_run(self, agent: str, text: str) -> str:
        answer = http("POST", self.process.url(f"/api/agents/{agent}/runs"), {"input": text}, user=SUPPORT_USER)
        assert answer.status == 202, (answer.status, answer.body)
        return answer.json["id"]

    def wait(self, name: str, timeout: float = 45.0) -> dict[str, Any]:
        run_id = self.runs[name]

        def finished() -> dict[str, Any] | None:
            answer = http("GET", self.process.url(f"/api/runs/{run_id}"))
            assert answer.status == 200, (answer.status, answer.body)
            return answer.json if answer.json["status"] in ("completed", "failed", "cancelled") else None

        return wait_for(finished, timeout=timeout, interval=0.05, what=f"run {name} ({run_id}) finished")

    def activities(self, name: str) -> list[str]:
        answer = http("GET", self.process.url(f"/runtime/webhooks/durabletask/instances/{self.runs[name]}"
                                              "?showHistory=true&showHistoryOutput=true"))
        assert answer.status == 200, (answer.status, answer.body)
        return [e["FunctionName"] for e in answer.json["historyEvents"] if e["EventType"] == "TaskCompleted"]


class Stack:
    def __init__(self, tmp: Path, api: str) -> None:
        self.api = api
        self.factory_log = tmp / "factory.jsonl"
        self.model = ScriptedModelServer(SCRIPT).start()
        settings = {
            "OPENAI_BASE_URL": self.model.base_url,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_API": api,
            "AGENT_MODEL": "scripted-model",
            "AZURE_OPENAI_ENDPOINT": "",
            "APPROVAL_TIMEOUT": "P1D",
            "AUDIT_PATH": str(tmp / "audit.sqlite3"),
            "PROVIDER_BASE_URL": self.model.base_url,
            "PROVIDER_API_KEY": PROVIDER_KEY,
            "PROVIDER_APP_LOG": str(self.factory_log),
        }
        self.cached = Runtime(RuntimeProcess(APP_DIR, state=tmp / "state-cached.sqlite3", env=settings,
                                             log_path=tmp / "runtime-cached.log"))
        self.uncached = Runtime(RuntimeProcess(APP_DIR, state=tmp / "state-uncached.sqlite3",
                                               env={**settings, "AGENT_RUN_CACHE_SIZE": "0"},
                                               log_path=tmp / "runtime-uncached.log"))
        starters = [threading.Thread(target=rt.process.start) for rt in (self.cached, self.uncached)]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join()
        for rt in (self.cached, self.uncached):
            assert rt.process.running, rt.process.log_tail()
        for name, (agent, text) in RUNS.items():
            self.cached.runs[name] = self.cached.start_run(agent, text)
        for name in UNCACHED_RUNS:
            agent, text = RUNS[name]
            self.uncached.runs[name] = self.uncached.start_run(agent, f"{text} {NOCACHE}")

    def requests(self, name: str, *, cached: bool = True) -> list[dict[str, Any]]:
        """The requests (with headers) the model server received for the run ``name``, in arrival order."""
        tagged = [r for r in self.model.requests if TAGS[name] in json.dumps(r["body"])]
        return [r for r in tagged if (NOCACHE in json.dumps(r["body"])) != cached]

    def factory_calls(self) -> list[dict[str, Any]]:
        if not self.factory_log.exists():
            return []
        return [json.loads(line) for line in self.factory_log.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        try:
            for rt in (self.cached, self.uncached):
                rt.process.stop()
        finally:
            self.model.stop()


APIS = ("responses", "chat_completions")


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    with started_together({api: (lambda api=api: Stack(tmp_path_factory.mktemp(f"providers-{api}"), api))
                           for api in APIS}) as built:
        yield built


@pytest.fixture(params=APIS)
def stack(request, stacks) -> Stack:
    return stacks[request.param]


def _path(stack: Stack) -> str:
    return "/v1/responses" if stack.api == "responses" else "/v1/chat/completions"


@pytest.mark.parametrize("name,model", [("provider", "provider:alt-model"), ("prefix", "provider:prefixed-model"),
                                        ("model", "provider:registered-model")])
@pytest.mark.parametrize("cached", [True, False], ids=["cache-on", "cache-off"])
def test_a_registered_provider_or_model_makes_every_model_call_of_the_run(stack, name, model, cached):
    runtime = stack.cached if cached else stack.uncached
    run = runtime.wait(name)
    assert run["status"] == "completed", run
    assert run["output"] == "Looked up k1."
    requests = stack.requests(name, cached=cached)
    # Two turns (lookup, then the answer), each sent once by the provider's own client (its key, its model name);
    # with the cache off the replays of the run from history sent nothing again.
    assert [(r["path"], r["body"]["model"]) for r in requests] == [(_path(stack), model)] * 2
    assert {r["headers"]["authorization"] for r in requests} == {f"Bearer {PROVIDER_KEY}"}
    assert runtime.activities(name) == ["invoke_model", "lookup", "invoke_model"]


def test_the_factories_ran_in_the_activity_never_in_an_orchestrator(stack):
    for name in RUNS:
        stack.cached.wait(name)
    for name in UNCACHED_RUNS:
        stack.uncached.wait(name)
    calls = stack.factory_calls()
    assert calls, "no factory call was logged"
    assert {c["inSession"] for c in calls} == {False}
    pids = {rt.process.proc.pid for rt in (stack.cached, stack.uncached)}
    assert {c["pid"] for c in calls} <= pids


def test_without_a_provider_the_built_in_api_answers(stack):
    run = stack.cached.wait("plain")
    assert run["status"] == "completed" and run["output"] == "Looked up k1.", run
    requests = stack.requests("plain")
    assert [(r["body"]["model"], r["headers"]["authorization"]) for r in requests] == [
        ("scripted-model", "Bearer test-key")] * 2


def test_an_unregistered_provider_fails_the_run_at_once_saying_what_to_do(stack):
    run = stack.cached.wait("unregistered")
    assert run["status"] == "failed", run
    assert "RunConfig(model_provider=<ScriptedServerProvider>) is not registered for durable runs" in run["error"]
    assert "durable_agents.register_model_provider(" in run["error"]
    assert stack.requests("unregistered") == [] and stack.cached.activities("unregistered") == []
