"""durable_agents.App and Blueprint: one registration per agent, the route prefix from host.json, no import-time
side effects."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from agents import Agent, Runner

import durable_agents
from durable_agents._app import route_prefix_from_host_json


def _functions(app) -> dict:
    return {f.get_function_name(): f for f in app.get_functions()}


def test_an_agent_decorated_on_a_blueprint_is_registered_once_under_its_function_name(tmp_path):
    agent = Agent(name="helper", instructions="Help.")
    bp = durable_agents.Blueprint()

    @bp.agent(agent, description="Helps.", settings=("HELPER_LIMIT",))
    def helper_run(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    app = durable_agents.App(app_dir=tmp_path)
    app.register_functions(bp)
    functions = _functions(app)
    assert "helper_run" in functions and "invoke_model" in functions and "api_start_run" in functions
    [entry] = app.registry.list()
    assert (entry.name, entry.orchestrator, entry.description, entry.settings) == (
        "helper", "helper_run", "Helps.", ("HELPER_LIMIT",))
    assert entry.agent is agent
    assert bp.agents == [entry]


def test_the_app_itself_takes_the_agent_decorator_and_an_api_name(tmp_path):
    agent = Agent(name="Support Agent", instructions="Help.")
    app = durable_agents.App(app_dir=tmp_path, http_api=False)

    @app.agent(agent, description="Helps.", name="support")
    def support(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    assert app.registry.get("support").orchestrator == "support"
    assert set(_functions(app)) == {"invoke_model", "durable_agents_audit", "durable_agents_session",
                                    "durable_agents_mcp_list_tools", "durable_agents_mcp_call_tool", "support",
                                    "durable_agents_conversation", "durable_agents_conversation_inbox",
                                    "durable_agents_conversation_reply", "durable_agents_archive_generation"}


def test_an_agent_name_registered_twice_with_another_orchestrator_is_refused(tmp_path):
    agent = Agent(name="twice", instructions="Help.")
    first, second = durable_agents.Blueprint(), durable_agents.Blueprint()

    @first.agent(agent, description="One.")
    def twice_one(context):
        return None

    @second.agent(agent, description="Two.")
    def twice_two(context):
        return None

    app = durable_agents.App(app_dir=tmp_path)
    app.register_functions(first)
    with pytest.raises(ValueError, match="already registered with orchestrator 'twice_one'"):
        app.register_functions(second)
    assert "twice_two" not in _functions(app) and app.registry.get("twice").orchestrator == "twice_one"


@pytest.mark.parametrize(("bad", "error", "match"), [
    ({"name": "no spaces"}, ValueError, "must match"),
    ({"description": " "}, ValueError, "non-empty"),
    ({"settings": "ONE"}, ValueError, "not a string"),
])
def test_bad_agent_registrations_fail_at_decoration(bad, error, match):
    agent = Agent(name="ok", instructions="Help.")
    kwargs = {"description": "Helps.", **bad}

    def orchestrator(context):
        return None

    with pytest.raises(error, match=match):
        durable_agents.Blueprint().agent(agent, **kwargs)(orchestrator)


def test_the_agent_decorator_wants_an_sdk_agent():
    with pytest.raises(TypeError, match="agents.Agent"):
        durable_agents.Blueprint().agent("support", description="x")


@pytest.mark.parametrize(("host", "prefix"), [
    (None, "/api"),
    ({"version": "2.0"}, "/api"),
    ({"version": "2.0", "extensions": {"http": {"routePrefix": "v1/agents"}}}, "/v1/agents"),
    ({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}}, ""),
])
def test_the_route_prefix_comes_from_host_json(tmp_path, host, prefix):
    if host is not None:
        (tmp_path / "host.json").write_text(json.dumps(host))
    assert route_prefix_from_host_json(tmp_path) == prefix
    assert durable_agents.App(app_dir=tmp_path).route_prefix == prefix


def test_a_route_prefix_that_is_not_a_string_is_a_clear_error(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"http": {"routePrefix": 1}}}))
    with pytest.raises(ValueError, match="routePrefix must be a string"):
        route_prefix_from_host_json(tmp_path)


def test_importing_the_package_changes_nothing_global_and_app_installs_the_runner_once():
    code = textwrap.dedent("""
        import importlib
        import agents.run
        events = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")
        runner_before, parse_before = agents.run.DEFAULT_AGENT_RUNNER, events.dt_parse
        import durable_agents
        assert agents.run.DEFAULT_AGENT_RUNNER is runner_before
        assert events.dt_parse is parse_before
        durable_agents.App(app_dir=".", http_api=False)
        installed, memo = agents.run.DEFAULT_AGENT_RUNNER, events.dt_parse
        assert type(installed).__name__ == "DurableAgentRunner" and memo is not parse_before
        durable_agents.App(app_dir=".", http_api=False)
        durable_agents.install()
        assert agents.run.DEFAULT_AGENT_RUNNER is installed and events.dt_parse is memo
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_public_api_is_what_all_lists_and_implementation_modules_are_private():
    import pkgutil

    for name in durable_agents.__all__:
        assert hasattr(durable_agents, name), name
    public_modules = [m.name for m in pkgutil.iter_modules(durable_agents.__path__) if not m.name.startswith("_")]
    assert public_modules == ["testing"]
    assert durable_agents.__version__


def test_a_workflow_is_registered_with_its_kind_and_its_agents_approval_tools(tmp_path):
    refund = Agent(name="refunds", instructions="Refund.", tools=[])
    bp = durable_agents.Blueprint()

    @bp.workflow("resolve", description="Plan, approve, act.", agents=(refund,), settings=("LIMIT",))
    def resolve_run(context):
        decision = yield context.request_approval("Go?")
        return decision["decision"]

    app = durable_agents.App(app_dir=tmp_path)
    app.register_functions(bp)
    entry = app.registry.get("resolve")
    assert (entry.kind, entry.orchestrator, entry.settings, entry.agents) == ("workflow", "resolve_run", ("LIMIT",),
                                                                            (refund,))
    assert entry.to_json()["kind"] == "workflow" and "resolve_run" in _functions(app)


def test_register_agent_modules_imports_the_agents_folder_and_registers_every_blueprint(tmp_path, monkeypatch):
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "helper.py").write_text(textwrap.dedent("""
        from agents import Agent, Runner
        import durable_agents
        from .helper_script import GREETING

        helper_agent = Agent(name="helper", instructions=GREETING)
        bp = durable_agents.Blueprint()

        @bp.agent(helper_agent, description="Helps.")
        def helper_run(context):
            return Runner.run_sync(helper_agent, context.get_input()["input"])
    """))
    (folder / "helper_script.py").write_text('GREETING = "Help."\n')  # no blueprint: imported, not registered
    (folder / "_private.py").write_text("raise RuntimeError('never imported')\n")
    for name in [n for n in sys.modules if n == "app_agents" or n.startswith("app_agents.")]:
        monkeypatch.delitem(sys.modules, name)
    app = durable_agents.App(app_dir=tmp_path, http_api=False)
    assert app.register_agent_modules() == ["helper"]
    assert [e.name for e in app.registry.list()] == ["helper"] and "helper_run" in _functions(app)


def test_agent_run_cache_size_sets_the_live_run_cache(tmp_path, monkeypatch, fresh_runner_cache):
    from durable_agents._runner import cache

    monkeypatch.setenv("AGENT_RUN_CACHE_SIZE", "0")
    durable_agents.App(app_dir=tmp_path, http_api=False)
    assert cache._size == 0
    monkeypatch.setenv("AGENT_RUN_CACHE_SIZE", "12")
    durable_agents.App(app_dir=tmp_path, http_api=False)
    assert cache._size == 12
    monkeypatch.setenv("AGENT_RUN_CACHE_SIZE", "-1")
    with pytest.raises(ValueError, match="AGENT_RUN_CACHE_SIZE must be a whole number"):
        durable_agents.App(app_dir=tmp_path, http_api=False)


def test_the_mcp_tools_follow_the_http_api_and_refuse_an_agent_named_like_one(tmp_path):
    mcp = {"mcp_get_run", "mcp_list_approvals", "mcp_decide_approval"}
    assert mcp <= set(_functions(durable_agents.App(app_dir=tmp_path)))
    assert not mcp & set(_functions(durable_agents.App(app_dir=tmp_path, mcp_tools=False)))
    app = durable_agents.App(app_dir=tmp_path, http_api=False, mcp_tools=True)
    agent = Agent(name="Helper", instructions="Help.")

    @app.agent(agent, description="Helps.", name="helper")
    def helper(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    assert mcp | {"mcp_agent_helper"} <= set(_functions(app))
    with pytest.raises(ValueError, match="MCP server has a tool of that name"):
        @app.agent(Agent(name="Bad", instructions="x"), description="x", name="Get_Run")
        def bad(context):
            return None
