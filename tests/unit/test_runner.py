"""Replay tests of the durable agent runner: real azure-functions-durable replay driven by durable_agents.testing
(the local runtime's emulation of the extension on a virtual clock), real openai-agents runs, activities executed
in-process, the model scripted (no model API here)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest
from agents import Agent, Runner, Usage, handoff

from durable_agents import ToolCall, activity_tool, agent_orchestrator, run_setting
from durable_agents import _runner as durable_runner
from durable_agents.testing import (
    ModelStep,
    ReplayHarness,
    ScriptedModel,
    assistant_message,
    function_call,
    function_outputs,
    model_error,
)

SETTINGS = {"APPROVAL_TIMEOUT": "PT1H", "REFUND_APPROVAL_THRESHOLD": "100"}
TOOL_TURN_USAGE = Usage(requests=1, input_tokens=20, output_tokens=7, total_tokens=27)
TEXT_TURN_USAGE = Usage(requests=1, input_tokens=10, output_tokens=5, total_tokens=15)


pytestmark = pytest.mark.usefixtures("fresh_runner_cache")


class Shop:
    """A small app: tools, a support agent, a refunds agent reachable by handoff, and a scripted model."""

    def __init__(self, script: list[Any], *, one_message_per_episode: bool = False) -> None:
        self.bp = df.Blueprint()
        self.calls: list[tuple[str, Any]] = []
        self.failures = 0
        shop = self

        @activity_tool(self.bp)
        def lookup_order(order_id: str) -> dict:
            """Look up an order by id."""
            shop.calls.append(("lookup_order", order_id))
            return {"order_id": order_id, "status": "shipped", "total": "250.00"}

        @activity_tool(self.bp)
        def flaky_inventory(sku: str) -> dict:
            """Check stock; always fails in these tests."""
            shop.calls.append(("flaky_inventory", sku))
            shop.failures += 1
            raise ConnectionError(f"inventory service down for {sku}")

        async def needs_review(ctx, args: dict, call_id: str) -> bool:
            return Decimal(str(args["amount"])) > Decimal(run_setting("REFUND_APPROVAL_THRESHOLD", "100"))

        @activity_tool(self.bp, needs_approval=needs_review)
        def refund_order(order_id: str, amount: str, call: ToolCall) -> dict:
            """Refund (part of) an order."""
            shop.calls.append(("refund_order", order_id, amount, f"{call.run_id}:{call.call_id}"))
            return {"refunded": amount, "order_id": order_id}

        self.refunds = Agent(name="refunds", instructions="Handle refunds.", tools=[refund_order])
        self.support = Agent(
            name="support",
            instructions="Help customers.",
            tools=[lookup_order, flaky_inventory, refund_order],
            handoffs=[handoff(self.refunds)],
        )

        @self.bp.orchestration_trigger(context_name="context")
        @agent_orchestrator(agent_name="support")
        def support(context):
            return Runner.run_sync(shop.support, context.get_input()["input"], max_turns=60)

        self.model = ScriptedModel(script)
        app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
        app.register_functions(self.bp)
        self.harness = ReplayHarness(app, model=self.model, one_message_per_episode=one_message_per_episode)

    def start(self, text: str = "hello", settings: dict | None = None, instance_id: str = "run-1"):
        return self.harness.start(
            "support", {"agent": "support", "input": text, "settings": settings or SETTINGS}, instance_id
        )


def _hash(arguments: Any) -> str:
    """The pending approval's ``argumentsHash``, computed here independently: sha256 of the canonical JSON."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _names(actions: list[dict]) -> list[str]:
    return [a.get("name") or "timer" for a in actions]


def _decide(shop: Shop, inst: Any, approval_id: str, approved: bool, comment: str | None) -> None:
    """Raise the decision event for ``approval_id`` (as the HTTP API does) and run what is due, timers excluded."""
    shop.harness.raise_event(inst.instance_id, f"approval:{approval_id}", {"approved": approved, "comment": comment})
    shop.harness.run(advance_timers=False)


def _refunds(shop: Shop) -> list[tuple]:
    """The refund_order activity executions of ``shop``: ``("refund_order", order_id, amount, idempotency key)``."""
    return [c for c in shop.calls if c[0] == "refund_order"]


def test_multi_turn_run_with_parallel_tools_and_a_failing_tool():
    shop = Shop(
        [
            ModelStep([function_call("lookup_order", {"order_id": "ORD-1"}, call_id="c1")], usage=TOOL_TURN_USAGE),
            ModelStep(
                [
                    function_call("flaky_inventory", {"sku": "SKU-9"}, call_id="c2"),
                    function_call("lookup_order", {"order_id": "ORD-2"}, call_id="c3"),
                    function_call("lookup_order", {"order_id": "ORD-3"}, call_id="c4"),
                ],
                usage=TOOL_TURN_USAGE,
            ),
            ModelStep([assistant_message("All checked.")], usage=TEXT_TURN_USAGE),
        ]
    )
    inst = shop.start()
    shop.harness.run()
    assert inst.status == "Completed", inst.output
    assert inst.output == {
        "finalOutput": "All checked.",
        "lastAgent": "support",
        "turns": 3,
        "usage": {"requests": 3, "inputTokens": 50, "outputTokens": 19, "totalTokens": 69},
        "demo": False,
    }
    # Episode 1: model; 2: one tool; 3: the three tools of turn 2 scheduled together (one fan-out).
    assert _names(inst.episode_actions[0]) == ["invoke_model"]
    assert _names(inst.episode_actions[1]) == ["lookup_order"]
    assert _names(inst.episode_actions[3]) == ["flaky_inventory", "lookup_order", "lookup_order"]
    # The failing tool was retried by Durable (3 attempts) and reached the model as a tool error.
    assert shop.failures == 3
    outputs = function_outputs(shop.model.requests[2])
    assert outputs["c2"] == "Tool 'flaky_inventory' failed: ConnectionError: inventory service down for SKU-9"
    assert json.loads(outputs["c3"])["order_id"] == "ORD-2"
    assert json.loads(outputs["c4"])["order_id"] == "ORD-3"
    # Tool activity input contract (docs/internals.md).
    first_tool = inst.episode_actions[1][0]["input"]
    assert first_tool == {
        "args": {"order_id": "ORD-1"},
        "call": {"runId": "run-1", "callId": "c1", "tool": "lookup_order", "agent": "support",
                 "customer": None, "approved": False},
    }
    assert inst.custom_status == {
        "agent": "support",
        "currentAgent": "support",
        "turns": 3,
        "lastTool": "lookup_order",
        "pendingApprovals": [],
        "approvals": [],
        "demo": False,
    }


def test_results_are_matched_by_task_id_when_a_caught_failure_precedes_them():
    # One completion per episode: the failure (and its retries) interleave with the other results.
    shop = Shop(
        [
            [
                function_call("flaky_inventory", {"sku": "A"}, call_id="c1"),
                function_call("lookup_order", {"order_id": "ORD-2"}, call_id="c2"),
                function_call("lookup_order", {"order_id": "ORD-3"}, call_id="c3"),
            ],
            [function_call("lookup_order", {"order_id": "ORD-4"}, call_id="c4")],
            [assistant_message("ok")],
        ],
        one_message_per_episode=True,
    )
    inst = shop.start()
    shop.harness.run()
    assert inst.status == "Completed", inst.output
    second = function_outputs(shop.model.requests[1])
    assert second["c1"].startswith("Tool 'flaky_inventory' failed: ConnectionError")
    assert json.loads(second["c2"])["order_id"] == "ORD-2"
    assert json.loads(second["c3"])["order_id"] == "ORD-3"
    third = function_outputs(shop.model.requests[2])
    assert json.loads(third["c4"])["order_id"] == "ORD-4"


def test_model_retries_on_429_with_retry_after_and_500_then_succeeds():
    shop = Shop([model_error(429, retry_after=30), model_error(500), [assistant_message("fine")]])
    inst = shop.start()
    shop.harness.run()
    assert inst.status == "Completed", inst.output
    assert inst.output["finalOutput"] == "fine"
    timers = [a for episode in inst.episode_actions for a in episode if "timer" in a]
    assert [t["timer"] for t in timers] == ["2026-01-01T00:00:30.002Z", "2026-01-01T00:00:34.004Z"]
    # 30 s honours retry-after (> 2 s backoff); then 4 s = 2 s * 2**1 after the second failure.
    assert len(shop.model.requests) == 3


def test_a_retry_after_beyond_five_minutes_waits_five_minutes_on_the_durable_timer():
    # 1e15 s (a broken or hostile header) and one hour: both capped at 300 s, so the run is not parked for ages.
    shop = Shop([model_error(429, retry_after=1e15), model_error(429, retry_after=3600), [assistant_message("ok")]])
    inst = shop.start()
    shop.harness.run()
    assert inst.status == "Completed", inst.output
    assert inst.output["finalOutput"] == "ok"
    timers = [a["timer"] for episode in inst.episode_actions for a in episode if "timer" in a]
    assert timers == ["2026-01-01T00:05:00.002Z", "2026-01-01T00:10:00.004Z"]
    assert [e["retryAfter"] for e in (r["error"] for r in shop.model.results[:2])] == [1e15, 3600]
    assert len(shop.model.requests) == 3


def test_model_error_400_is_not_retried_and_fails_the_run():
    shop = Shop([model_error(400, message="bad request")])
    inst = shop.start()
    shop.harness.run()
    assert inst.status == "Failed"
    assert "HTTP 400" in inst.output and "bad request" in inst.output
    assert len(shop.model.requests) == 1
    assert not [a for episode in inst.episode_actions for a in episode if "timer" in a]


def test_model_retries_stop_after_max_attempts():
    shop = Shop([model_error(503) for _ in range(3)])
    inst = shop.start(settings={**SETTINGS, "MODEL_MAX_ATTEMPTS": "3"})
    shop.harness.run()
    assert inst.status == "Failed"
    assert "after 3 attempt(s)" in inst.output
    assert len(shop.model.requests) == 3


def _refund_script(final: str = "done") -> list[Any]:
    return [
        [function_call("refund_order", {"order_id": "ORD-1", "amount": "250.00"}, call_id="call_r1")],
        [assistant_message(final)],
    ]


def _two_refunds_script(final: str = "done") -> list[Any]:
    return [
        [
            function_call("refund_order", {"order_id": "ORD-1", "amount": "250.00"}, call_id="call_a"),
            function_call("refund_order", {"order_id": "ORD-2", "amount": "300.00"}, call_id="call_b"),
        ],
        [assistant_message(final)],
    ]


def test_approval_approved_runs_the_tool_and_cancels_the_timer():
    shop = Shop(_refund_script())
    inst = shop.start()
    shop.harness.run(advance_timers=False)
    assert inst.status == "Running"
    status = inst.custom_status
    assert status["pendingApprovals"] == [
        {
            "id": "call_r1",
            "kind": "tool",
            "tool": "refund_order",
            "summary": 'Call refund_order with {"order_id": "ORD-1", "amount": "250.00"}',
            "arguments": {"order_id": "ORD-1", "amount": "250.00"},
            "argumentsHash": _hash({"order_id": "ORD-1", "amount": "250.00"}),
            "requestedAt": status["pendingApprovals"][0]["requestedAt"],
            "expiresAt": "2026-01-01T01:00:00.002Z",
        }
    ]
    assert status["pendingApprovals"][0]["requestedAt"] == "2026-01-01T00:00:00.002Z"
    assert not _refunds(shop)
    _decide(shop, inst, "call_r1", True, "ok")  # completes without the timer firing: it was cancelled
    assert inst.status == "Completed", inst.output
    assert _refunds(shop) == [
        ("refund_order", "ORD-1", "250.00", "run-1:call_r1")
    ]
    refund_input = next(i for name, i in shop.harness.activity_calls if name == "refund_order")
    assert refund_input["call"] == {"runId": "run-1", "callId": "call_r1", "tool": "refund_order",
                                    "agent": "support", "customer": None, "approved": True}
    assert inst.custom_status["pendingApprovals"] == []
    assert inst.custom_status["approvals"] == [
        {"id": "call_r1", "kind": "tool", "tool": "refund_order", "decision": "approved", "comment": "ok",
         "decidedAt": inst.custom_status["approvals"][0]["decidedAt"], "decidedBy": None}
    ]
    timer_events = [e for e in inst.history if e["EventType"] == 10]
    assert len(timer_events) == 1 and not [e for e in inst.history if e["EventType"] == 11]


def test_small_refund_needs_no_approval_by_the_callable_policy():
    shop = Shop(
        [[function_call("refund_order", {"order_id": "ORD-1", "amount": "20.00"}, call_id="call_s")],
         [assistant_message("ok")]]
    )
    inst = shop.start()
    shop.harness.run(advance_timers=False)
    assert inst.status == "Completed"
    assert [c[0] for c in shop.calls] == ["refund_order"]


def test_approval_rejected_reaches_the_model_with_the_comment():
    shop = Shop(_refund_script("understood"))
    inst = shop.start()
    shop.harness.run(advance_timers=False)
    # The Python client double-encodes: the orchestrator receives a JSON string holding the payload.
    _decide(shop, inst, "call_r1", False, "too much")
    assert inst.status == "Completed", inst.output
    assert not _refunds(shop)
    seen = function_outputs(shop.model.requests[1])["call_r1"]
    assert "rejected" in seen and "too much" in seen
    assert inst.custom_status["approvals"][0]["decision"] == "rejected"
    assert inst.custom_status["approvals"][0]["comment"] == "too much"


@pytest.mark.parametrize(
    ("script", "ids"),
    [(_refund_script("expired noted"), ["call_r1"]), (_two_refunds_script("nothing done"), ["call_a", "call_b"])],
)
def test_approvals_expire_when_the_timer_fires_first(script, ids):
    shop = Shop(script)
    inst = shop.start()
    shop.harness.run(advance_timers=True)
    assert inst.status == "Completed", inst.output
    assert not _refunds(shop)
    outputs = function_outputs(shop.model.requests[1])
    assert all("expired" in outputs[approval_id] for approval_id in ids)
    decisions = inst.custom_status["approvals"]
    assert [(d["id"], d["decision"]) for d in decisions] == [(approval_id, "expired") for approval_id in ids]
    assert all(d["decidedAt"].startswith("2026-01-01T01:00:00") for d in decisions)
    assert len([e for e in inst.history if e["EventType"] == 11]) == 1  # one timer for all, fired once


def test_handoff_between_two_agents():
    shop = Shop(
        [
            [function_call("transfer_to_refunds", {}, call_id="h1")],
            [function_call("refund_order", {"order_id": "ORD-7", "amount": "10.00"}, call_id="call_r2")],
            [assistant_message("Refunded 10.00.")],
        ]
    )
    inst = shop.start()
    shop.harness.run(advance_timers=False)
    assert inst.status == "Completed", inst.output
    assert inst.output["lastAgent"] == "refunds"
    assert inst.custom_status["currentAgent"] == "refunds"
    assert [c[0] for c in shop.calls] == ["refund_order"]
    assert shop.calls[0][3] == "run-1:call_r2"
    assert shop.harness.activity_calls[-2][1]["call"]["agent"] == "refunds"


def _scenario() -> list[Any]:
    return [
        [function_call("lookup_order", {"order_id": "ORD-1"}, call_id="c1")],
        model_error(429, retry_after=5),
        [function_call("flaky_inventory", {"sku": "X"}, call_id="c2"),
         function_call("lookup_order", {"order_id": "ORD-2"}, call_id="c3")],
        [function_call("refund_order", {"order_id": "ORD-1", "amount": "250.00"}, call_id="call_r1")],
        [assistant_message("done")],
    ]


def _run_scenario(cache_size: int, *, restart_every_episode: bool = False) -> tuple[Any, ReplayHarness]:
    durable_runner.set_session_cache_size(cache_size)
    shop = Shop(_scenario())
    inst = shop.start()
    for _ in range(500):
        if shop.harness.step(advance_timers=True):
            if restart_every_episode:
                durable_runner.clear_session_cache()  # as if the process restarted between episodes
            continue
        if inst.status == "Running" and inst.custom_status["pendingApprovals"]:
            shop.harness.raise_event(inst.instance_id, "approval:call_r1", {"approved": True, "comment": None})
            continue
        break
    return inst, shop.harness


def test_cache_and_full_replay_produce_identical_histories():
    cached, h1 = _run_scenario(64)
    uncached, h2 = _run_scenario(0)
    restarted, h3 = _run_scenario(64, restart_every_episode=True)
    assert cached.status == uncached.status == restarted.status == "Completed"
    assert cached.output == uncached.output == restarted.output
    assert h1.comparable_history("run-1") == h2.comparable_history("run-1") == h3.comparable_history("run-1")
    assert cached.custom_statuses == uncached.custom_statuses == restarted.custom_statuses
    assert cached.episodes == uncached.episodes


def test_model_instance_on_an_agent_is_rejected_inside_an_orchestration():
    from agents.models.openai_responses import OpenAIResponsesModel
    from openai import AsyncOpenAI

    bp = df.Blueprint()
    agent = Agent(name="x", model=OpenAIResponsesModel("gpt-4.1", AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9")))

    @bp.orchestration_trigger(context_name="context")
    @agent_orchestrator
    def bad(context):
        return Runner.run_sync(agent, "hi")

    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(bp)
    harness = ReplayHarness(app)
    inst = harness.start("bad", {"agent": "x", "input": "hi", "settings": {}}, "bad-1")
    harness.run()
    assert inst.status == "Failed"
    assert "model name" in inst.output


def _state_actions(inst: Any) -> list[dict]:
    return json.loads(inst.last_state)["actions"][0]


def test_two_approvals_decided_in_reverse_order_are_published_as_they_arrive():
    shop = Shop(_two_refunds_script())
    inst = shop.start()
    shop.harness.run(advance_timers=False)
    pending = inst.custom_status["pendingApprovals"]
    assert [p["id"] for p in pending] == ["call_a", "call_b"]
    assert {p["expiresAt"] for p in pending} == {"2026-01-01T01:00:00.002Z"}  # one shared expiry
    assert len([e for e in inst.history if e["EventType"] == 10]) == 1  # one durable timer for both
    episodes_before = inst.episodes

    # The second approval is decided first: the status shows it while the first is still pending.
    _decide(shop, inst, "call_b", False, "too much")
    assert inst.status == "Running"
    assert inst.episodes == episodes_before + 1
    assert inst.episode_actions[-1] == []  # re-waiting on the already-scheduled tasks scheduled nothing
    assert [p["id"] for p in inst.custom_status["pendingApprovals"]] == ["call_a"]
    assert inst.custom_status["approvals"] == [
        {"id": "call_b", "kind": "tool", "tool": "refund_order", "decision": "rejected", "comment": "too much",
         "decidedAt": inst.custom_status["approvals"][0]["decidedAt"], "decidedBy": None}
    ]
    # The SDK re-yielded no action: still one WhenAny (events of both approvals + the timer) after the model call.
    actions = _state_actions(inst)
    assert [a["actionType"] for a in actions] == [0, 11]
    assert [c["actionType"] for c in actions[1]["compoundActions"]] == [6, 6, 5]
    assert not _refunds(shop)

    _decide(shop, inst, "call_a", True, "ok")  # completes without the timer firing: it was cancelled
    assert inst.status == "Completed", inst.output
    assert _refunds(shop) == [
        ("refund_order", "ORD-1", "250.00", "run-1:call_a")
    ]
    outputs = function_outputs(shop.model.requests[1])
    assert json.loads(outputs["call_a"]) == {"refunded": "250.00", "order_id": "ORD-1"}
    assert "rejected" in outputs["call_b"] and "too much" in outputs["call_b"]
    assert [(d["id"], d["decision"]) for d in inst.custom_status["approvals"]] == [
        ("call_b", "rejected"), ("call_a", "approved")
    ]
    assert inst.custom_status["pendingApprovals"] == []
    assert len([e for e in inst.history if e["EventType"] == 10]) == 1
    assert not [e for e in inst.history if e["EventType"] == 11]
    timer = next(c for a in _state_actions(inst) if a["actionType"] == 11 for c in a["compoundActions"]
                 if c["actionType"] == 5)
    assert timer["isCanceled"] is True


@pytest.mark.parametrize(
    ("timeout", "expiry", "timers"),
    [
        ("PT1H", "2026-01-01T01:00:00", ["2026-01-01T01:00:00.002Z"]),
        # Over the 6-day limit of one timer the SDK hops in 3-day sub-timers (protocol §3.5): still one expiry.
        ("P8D", "2026-01-09T00:00:00", ["2026-01-04T00:00:00.002Z", "2026-01-09T00:00:00.002Z"]),
    ],
)
def test_one_approval_decided_and_the_other_expired(timeout, expiry, timers):
    shop = Shop(_two_refunds_script("partly done"))
    inst = shop.start(settings={**SETTINGS, "APPROVAL_TIMEOUT": timeout})
    shop.harness.run(advance_timers=False)
    _decide(shop, inst, "call_a", True, None)
    assert [p["id"] for p in inst.custom_status["pendingApprovals"]] == ["call_b"]
    assert [d["decision"] for d in inst.custom_status["approvals"]] == ["approved"]
    shop.harness.run(advance_timers=True)  # the shared timer fires: the approval still pending expires
    assert inst.status == "Completed", inst.output
    assert [c[1] for c in _refunds(shop)] == ["ORD-1"]
    outputs = function_outputs(shop.model.requests[1])
    assert json.loads(outputs["call_a"])["refunded"] == "250.00"
    assert "expired" in outputs["call_b"]
    decisions = inst.custom_status["approvals"]
    assert [(d["id"], d["decision"]) for d in decisions] == [("call_a", "approved"), ("call_b", "expired")]
    assert decisions[1]["decidedAt"].startswith(expiry)
    assert [e["FireAt"] for e in inst.history if e["EventType"] == 11] == timers  # the one timer fired


def _run_two_approvals(cache_size: int, order: list[list[str]], *, restart_every_episode: bool = False):
    durable_runner.set_session_cache_size(cache_size)
    shop = Shop(_two_refunds_script())
    inst = shop.start()
    batches = list(order)
    for _ in range(100):
        if shop.harness.step(advance_timers=False):
            if restart_every_episode:
                durable_runner.clear_session_cache()
            continue
        if inst.status == "Running" and batches:
            for approval_id in batches.pop(0):
                shop.harness.raise_event(inst.instance_id, f"approval:{approval_id}",
                                         {"approved": approval_id == "call_a", "comment": approval_id})
            continue
        break
    return inst, shop


@pytest.mark.parametrize("order", [[["call_b"], ["call_a"]], [["call_a"], ["call_b"]], [["call_b", "call_a"]]])
def test_concurrent_approvals_give_identical_histories_with_cache_without_and_after_restarts(order):
    runs = [_run_two_approvals(64, order), _run_two_approvals(0, order),
            _run_two_approvals(64, order, restart_every_episode=True)]
    first, shop = runs[0]
    assert first.status == "Completed", first.output
    for inst, other in runs[1:]:
        assert inst.status == "Completed", inst.output
        assert inst.output == first.output
        assert other.harness.comparable_history("run-1") == shop.harness.comparable_history("run-1")
        assert inst.custom_statuses == first.custom_statuses
        assert other.calls == shop.calls
    decided = [d["id"] for d in first.custom_status["approvals"]]
    assert decided == [approval_id for batch in order for approval_id in batch]  # in the order they arrived
    assert [c[1] for c in _refunds(shop)] == ["ORD-1"]
