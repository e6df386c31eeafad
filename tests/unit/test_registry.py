"""The agent registry (durable_agents._registry) with real OpenAI Agents SDK agents and tools."""

from typing import Any

import pytest
from agents import Agent, function_tool, handoff

from durable_agents._registry import AgentRegistry, approval_tools


@function_tool
def lookup(order_id: str) -> str:
    """Look up."""
    return order_id


@function_tool(needs_approval=True)
def refund(order_id: str) -> str:
    """Refund."""
    return order_id


async def _big_only(_ctx: Any, params: dict[str, Any], _call_id: str) -> bool:
    return float(params.get("amount", 0)) > 100


@function_tool(needs_approval=_big_only)
def refund_order(order_id: str, amount: str) -> str:
    """Refund with a threshold."""
    return order_id


def test_approval_tools_lists_always_and_conditional_and_skips_ungated():
    agent = Agent(name="a", tools=[lookup, refund, refund_order])
    assert approval_tools(agent) == [
        {"name": "refund", "approval": "always"},
        {"name": "refund_order", "approval": "conditional"},
    ]
    assert approval_tools(Agent(name="plain", tools=[lookup])) == []
    assert approval_tools(None) == []


def test_approval_tools_follow_handoffs_including_handoff_objects_and_cycles():
    billing = Agent(name="billing", tools=[refund_order])
    shipping = Agent(name="shipping", tools=[lookup, refund])
    triage = Agent(name="triage", tools=[lookup], handoffs=[billing, handoff(shipping)])
    billing.handoffs = [triage]  # a cycle must not loop
    assert approval_tools(triage) == [
        {"name": "refund_order", "approval": "conditional"},
        {"name": "refund", "approval": "always"},
    ]


def test_always_wins_over_conditional_for_the_same_tool_name():
    @function_tool(name_override="refund_order", needs_approval=True)
    def strict_refund(order_id: str) -> str:
        """Refund always gated."""
        return order_id

    agent = Agent(name="a", tools=[refund_order], handoffs=[Agent(name="b", tools=[strict_refund])])
    assert approval_tools(agent) == [{"name": "refund_order", "approval": "always"}]


def test_register_get_list_and_json_shape():
    reg = AgentRegistry()
    agent = Agent(name="support", tools=[lookup, refund_order])
    entry = reg.register("support", orchestrator="support_agent_run", description="  Helps.  ", agent=agent,
                         settings=("REFUND_APPROVAL_THRESHOLD", "REFUND_APPROVAL_THRESHOLD"))
    reg.register("alpha", orchestrator="alpha_run", description="First.")
    assert reg.get("support") is entry and reg.get("missing") is None
    assert [e.name for e in reg.list()] == ["alpha", "support"]
    assert entry.description == "Helps." and entry.settings == ("REFUND_APPROVAL_THRESHOLD",)
    assert entry.to_json() == {
        "name": "support",
        "kind": "agent",
        "description": "Helps.",
        "approvalTools": [{"name": "refund_order", "approval": "conditional"}],
        "links": {"runs": "/api/agents/support/runs"},
    }


def test_reregistering_same_orchestrator_replaces_but_a_different_one_is_an_error():
    reg = AgentRegistry()
    reg.register("support", orchestrator="support_agent_run", description="v1")
    assert reg.register("support", orchestrator="support_agent_run", description="v2").description == "v2"
    assert reg.get("support").description == "v2"
    with pytest.raises(ValueError, match="already registered with orchestrator 'support_agent_run'"):
        reg.register("support", orchestrator="other_run", description="v3")
    assert reg.unregister("support") is True and reg.unregister("support") is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "agent name"),
        ({"name": ""}, "agent name"),
        ({"name": "x" * 65}, "agent name"),
        ({"orchestrator": "bad-name"}, "orchestrator"),
        ({"orchestrator": ""}, "orchestrator"),
        ({"description": "   "}, "description"),
        ({"agent": object()}, "agents.Agent"),
        ({"settings": "APPROVAL_TIMEOUT"}, "tuple of setting names"),
        ({"settings": ("OK", "not ok")}, "setting name"),
    ],
)
def test_register_rejects_invalid_arguments(kwargs, message):
    arguments = {"name": "support", "orchestrator": "support_agent_run", "description": "Helps."}
    arguments.update(kwargs)
    name = arguments.pop("name")
    with pytest.raises(ValueError, match=message):
        AgentRegistry().register(name, **arguments)


def test_a_workflow_entry_lists_the_approval_tools_of_all_its_agents():
    writer = Agent(name="writer", instructions="Write.", tools=[lookup])
    refunder = Agent(name="refunder", instructions="Refund.", tools=[refund])
    entry = AgentRegistry().register("resolve", orchestrator="resolve_run", description="Plan, approve, act.",
                                     kind="workflow")
    assert entry.to_json()["kind"] == "workflow" and entry.approval_tools() == []
    entry = AgentRegistry.entry("resolve", orchestrator="resolve_run", description="Plan, approve, act.",
                                kind="workflow", workflow_agents=(writer, refunder))
    assert entry.to_json()["approvalTools"] == [{"name": "refund", "approval": "always"}]
    with pytest.raises(ValueError, match="kind must be"):
        AgentRegistry.entry("x", orchestrator="x", description="X.", kind="pipeline")
