"""Record the golden histories (run by hand): ``.venv/bin/python -m tests.golden.record [scenario ...]``.

For each scenario it starts the scripted OpenAI-compatible model server (tests/support/model_server.py) with the
scenario's script and the local runtime on the fixture app (``python -m local_runtime --app-dir tests/golden/app``,
state in a temporary SQLite file, the real ``invoke_model`` activity pointed at the model server through
``OPENAI_BASE_URL``), starts a ``support`` run over the app's HTTP API with the scenario name as its run id, decides
its approvals over the HTTP API, waits until it finished, stops the runtime and reads the instance's raw history
events from the runtime's SQLite state (``local_runtime.store.Store.history``: exactly the events the
orchestrator is handed). Each file ``tests/golden/histories/<scenario>.json`` holds a header (scenario,
description, recorded-with versions, date), the orchestration input, the expected status and output, and the
history. Finally every written file is replayed through the fixture app (``durable_agents.testing.
replay_history``), as the unit tests do.

Record again only for an intended change of what runs ask of Durable Functions (the old files show which runs in
flight that change would break); without arguments every scenario is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import platform
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_runtime.store import Store
from tests.support.model_server import ScriptedModelServer, call, calls_step, text_step
from tests.support.polling import wait_for
from tests.support.runtime_process import RuntimeProcess

GOLDEN_DIR = Path(__file__).resolve().parent
APP_DIR = GOLDEN_DIR / "app"
HISTORIES_DIR = GOLDEN_DIR / "histories"
AGENT = "support"
VERSIONED = ("durable-agents-functions", "openai-agents", "openai", "azure-functions-durable", "azure-functions")


@dataclass(frozen=True)
class Scenario:
    """One recorded run: the user's ``input``, the model server ``script``, the approvals to decide in order
    (``(approval id, approved, comment)``) and extra runtime settings."""

    name: str
    description: str
    input: str
    script: list[dict[str, Any]]
    decisions: tuple[tuple[str, bool, str | None], ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    agent: str = AGENT
    customer: str | None = None  # the start request's customer (version-2 runs are started with an identity)


def _refund_script(final: str) -> list[dict[str, Any]]:
    return [
        calls_step(call("lookup_order", {"order_id": "ORD-1"}, id="call_lookup")),
        calls_step(call("refund_order", {"order_id": "ORD-1", "amount": "250.00"}, id="call_refund")),
        text_step(final),
    ]


SCENARIOS = [
    Scenario("approval-approved", "A refund above the threshold waits for a person, who approves it; it runs.",
             "Please refund order ORD-1, the keyboard arrived broken.",
             _refund_script("Refunded 250.00 for ORD-1."), decisions=(("call_refund", True, "Photos check out."),)),
    Scenario("approval-rejected", "A refund above the threshold is rejected; the model reads the comment.",
             "Please refund order ORD-1, the keyboard arrived broken.",
             _refund_script("The refund was rejected by our team."),
             decisions=(("call_refund", False, "Outside the return window."),)),
    Scenario("approval-expired", "Nobody decides a pending refund; it expires when APPROVAL_TIMEOUT (3 s) passes.",
             "Please refund order ORD-1, the keyboard arrived broken.",
             _refund_script("The refund request timed out; a colleague will follow up."),
             env={"APPROVAL_TIMEOUT": "PT3S"}),
    Scenario("fan-out-three-tools", "One model turn calls three tools, scheduled together (one fan-out).",
             "Is my monitor from ORD-2 on its way, and is it back in stock?",
             [calls_step(call("lookup_order", {"order_id": "ORD-2"}, id="call_order"),
                         call("check_stock", {"sku": "SKU-2"}, id="call_stock"),
                         call("shipping_status", {"order_id": "ORD-2"}, id="call_ship")),
              text_step("ORD-2 has shipped; the monitor is out of stock for new orders.")]),
    Scenario("model-429-retry", "The model answers 429 (retry-after 1 s); the call is retried on a durable timer.",
             "Where is order ORD-3?",
             [calls_step(call("shipping_status", {"order_id": "ORD-3"}, id="call_ship"),
                         failures=[{"status": 429, "headers": {"retry-after": "1"}}]),
              text_step("ORD-3 was delivered.")]),
    Scenario("handoff", "The support agent hands off to the refunds agent, which refunds a small amount.",
             "Please refund the 20.00 cable of ORD-3.",
             [calls_step(call("transfer_to_refunds", {}, id="call_handoff")),
              calls_step(call("refund_order", {"order_id": "ORD-3", "amount": "20.00"}, id="call_refund")),
              text_step("Refunded 20.00 for ORD-3.")]),
    Scenario("v2-approval-approved", "Version 2 of the run input: started by a developer identity for a customer; "
             "the gated refund is written to the approval audit (durable_agents_audit) before the wait, another "
             "identity approves it (decidedBy, argumentsHash); it runs with ToolCall.approved.",
             "Please refund order ORD-1, the keyboard arrived broken.",
             _refund_script("Refunded 250.00 for ORD-1."), decisions=(("call_refund", True, "Photos check out."),),
             customer="jordan.rivera@example.com"),
    Scenario("v2-approval-expired", "Version 2: nobody decides the gated refund; it expires after APPROVAL_TIMEOUT "
             "(3 s) and the expiry is written to the approval audit (a second durable_agents_audit call).",
             "Please refund order ORD-1, the keyboard arrived broken.",
             _refund_script("The refund request timed out; a colleague will follow up."),
             env={"APPROVAL_TIMEOUT": "PT3S"}, customer="jordan.rivera@example.com"),
    Scenario("workflow-approval", "A generator workflow: the support agent answers (one tool turn), a person approves "
             "the answer (a workflow approval), then the workflow checks the stock (its own activity).",
             "Is my keyboard from ORD-1 delivered?",
             [calls_step(call("lookup_order", {"order_id": "ORD-1"}, id="call_lookup")),
              text_step("Yes, ORD-1 was delivered.")],
             decisions=(("answer-1", True, "Correct."),), agent="review"),
]


STARTER = "golden-starter"
APPROVER = "golden-approver"
"""Developer identities of the local runtime's App Service authentication emulation (``X-Dev-User`` on loopback,
roles Approver and Support by default): the run is started by one and decided by the other (separation of
duties)."""


def _http(method: str, url: str, body: Any = None, user: str = STARTER) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", "X-Dev-User": user})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


def _versions() -> dict[str, str]:
    versions = {name: importlib.metadata.version(name) for name in VERSIONED}
    versions["python"] = platform.python_version()
    return versions


def record(scenario: Scenario, tmp: Path) -> dict[str, Any]:
    """Run ``scenario`` on the local runtime and return the golden file's content."""
    server = ScriptedModelServer(scenario.script).start()
    settings = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "test-key", "OPENAI_API": "responses",
                "AGENT_MODEL": "scripted-model", "AZURE_OPENAI_ENDPOINT": "", "APPROVAL_TIMEOUT": "P1D",
                "MODEL_MAX_ATTEMPTS": "6", "REFUND_APPROVAL_THRESHOLD": "100",
                "AUDIT_PATH": str(tmp / f"{scenario.name}-audit.sqlite3"), **scenario.env}
    state = tmp / f"{scenario.name}.sqlite3"
    runtime = RuntimeProcess(APP_DIR, state=state, env=settings, log_path=tmp / f"{scenario.name}.log",
                             log_level="INFO")
    try:
        runtime.start()
        body: dict[str, Any] = {"input": scenario.input, "runId": scenario.name}
        if scenario.customer is not None:
            body["customer"] = scenario.customer
        status, started = _http("POST", runtime.url(f"/api/agents/{scenario.agent}/runs"), body)
        if status != 202:
            raise RuntimeError(f"{scenario.name}: start answered {status}: {started}")
        run_url = runtime.url(f"/api/runs/{scenario.name}")
        for approval_id, approved, comment in scenario.decisions:
            wait_for(lambda a=approval_id: a in [p["id"] for p in (_http("GET", run_url)[1] or {}).get(
                "pendingApprovals") or []], timeout=60, what=f"{scenario.name}: approval {approval_id} pending")
            status, answer = _http("POST", f"{run_url}/approvals/{approval_id}",
                                   {"approved": approved, "comment": comment}, user=APPROVER)
            if status not in (200, 202):
                raise RuntimeError(f"{scenario.name}: deciding {approval_id} answered {status}: {answer}")
        run = wait_for(lambda: (lambda r: r if r and r.get("status") in ("completed", "failed") else None)(
            _http("GET", run_url)[1]), timeout=90, what=f"{scenario.name} finished")
        if run["status"] != "completed":
            raise RuntimeError(f"{scenario.name}: the run {run['status']}: {run.get('error')}")
    except BaseException:
        print(runtime.log_tail(), file=sys.stderr)
        raise
    finally:
        runtime.stop()
        server.stop()
    store = Store(state)
    try:
        history = store.history(scenario.name)
        instance = store.instance(scenario.name)
    finally:
        store.close()
    if instance is None or instance.status != "Completed":
        raise RuntimeError(f"{scenario.name}: the stored instance is {instance.status if instance else 'missing'}")
    started_event = next(e for e in history if e["EventType"] == 0)
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "recordedWith": _versions(),
        "recordedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "recordedBy": "python -m tests.golden.record (local runtime + tests/support/model_server.py)",
        "orchestrator": started_event["Name"],
        "instanceId": scenario.name,
        "input": json.loads(json.loads(started_event["Input"])),
        "expectedStatus": instance.status,
        "expectedOutput": json.loads(instance.output) if instance.output is not None else None,
        "history": history,
    }


def main(argv: list[str] | None = None) -> int:
    """Record the named scenarios (default all), write their files, replay them through the fixture app."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [s.name for s in SCENARIOS]
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=f"default: all of {', '.join(names)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.scenarios) - set(names))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(names)}")
    chosen = [s for s in SCENARIOS if not args.scenarios or s.name in args.scenarios]
    HISTORIES_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        for scenario in chosen:
            content = record(scenario, Path(tmp))
            path = HISTORIES_DIR / f"{scenario.name}.json"
            path.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(path)
            print(f"{path.relative_to(GOLDEN_DIR.parents[1])}: {len(content['history'])} events, "
                  f"{path.stat().st_size} bytes")
    from durable_agents.testing import replay_history
    from tests.golden.app.function_app import app

    for path in written:
        result = replay_history(app, json.loads(path.read_text(encoding="utf-8")))
        print(f"{path.name}: replays clean ({result.status}, {result.steps} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
