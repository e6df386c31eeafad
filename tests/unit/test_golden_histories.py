"""Golden histories: runs recorded on the local runtime (tests/golden/record.py) replay through today's code.

Each file under tests/golden/histories/ is the raw history of one finished run of the fixture app
(tests/golden/app/function_app.py). Replaying it with ``durable_agents.testing.replay_history`` is what the Durable
extension does with a run in flight after a deployment, so a change that would break such runs fails here with
``durable_agents.NonDeterminismError``. The negative tests make sure it does, for changed apps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from durable_agents import NonDeterminismError
from durable_agents.testing import replay_history
from tests.golden.app.function_app import app, create_app

HISTORIES_DIR = Path(__file__).resolve().parents[1] / "golden" / "histories"
HISTORIES = sorted(HISTORIES_DIR.glob("*.json"))
SCENARIOS = {"approval-approved", "approval-rejected", "approval-expired", "fan-out-three-tools", "model-429-retry",
             "handoff", "workflow-approval"}


def _golden(name: str) -> dict[str, Any]:
    return json.loads((HISTORIES_DIR / f"{name}.json").read_text(encoding="utf-8"))


def test_the_golden_folder_holds_every_recorded_scenario():
    assert HISTORIES, f"no golden histories in {HISTORIES_DIR}: run .venv/bin/python -m tests.golden.record"
    assert {path.stem for path in HISTORIES} >= SCENARIOS


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: path.stem)
def test_every_golden_history_replays_clean(path):
    golden = json.loads(path.read_text(encoding="utf-8"))
    assert {"scenario", "recordedWith", "recordedAt", "expectedOutput", "history"} <= set(golden)
    result = replay_history(app, golden)
    assert (result.orchestrator, result.instance_id) == (golden["orchestrator"], golden["instanceId"])
    assert result.status == golden["expectedStatus"] == "Completed"
    assert result.output == golden["expectedOutput"]
    assert result.custom_status["pendingApprovals"] == []


def test_a_renamed_tool_breaks_the_runs_that_called_it():
    # The recorded model answer calls lookup_order, which the agent no longer has: the run fails where the history
    # scheduled that activity.
    with pytest.raises(NonDeterminismError) as caught:
        replay_history(create_app(lookup_name="find_order"), _golden("approval-approved"))
    error = caught.value
    assert error.step == 1
    assert error.recorded == {"kind": "activity", "name": "lookup_order"}
    assert error.requested is None
    assert "sequence ID 1 and name 'lookup_order'" in str(error)


def test_a_tool_call_that_is_no_longer_an_activity_is_a_dropped_step():
    with pytest.raises(NonDeterminismError) as caught:
        replay_history(create_app(lookup_as_activity=False), _golden("fan-out-three-tools"))
    error = caught.value
    assert error.step == 1
    assert error.recorded == {"kind": "activity", "name": "lookup_order"}
    assert error.requested == {"kind": "activity", "name": "check_stock"}  # the next tool of the fan-out moved up


def test_an_extra_activity_after_the_recorded_end_is_reported_at_that_step():
    golden = _golden("handoff")
    with pytest.raises(NonDeterminismError) as caught:
        replay_history(create_app(audit_run=True), golden)
    error = caught.value
    assert error.step == 4  # where the recorded run completed
    assert error.recorded == {"kind": "completed", "output": golden["expectedOutput"]}
    assert error.requested == {"kind": "activity", "name": "invoke_model"}


def test_another_output_than_recorded_is_reported():
    golden = _golden("model-429-retry")
    end = next(e for e in golden["history"] if e["EventType"] == 1)
    end["Result"] = json.dumps({**golden["expectedOutput"], "finalOutput": "something else"})
    with pytest.raises(NonDeterminismError) as caught:
        replay_history(app, golden)
    error = caught.value
    assert error.step == end["EventId"] == 5
    assert error.recorded["output"]["finalOutput"] == "something else"
    assert error.requested == {"kind": "completed", "output": golden["expectedOutput"]}


def test_a_history_cut_after_an_episode_replays_clean_up_to_there():
    # The run as it was while it waited for the approval: what a deployment meets in flight.
    history = _golden("approval-approved")["history"]
    waiting = history[:next(i for i, e in enumerate(history) if e["EventType"] == 15) - 1]
    result = replay_history(app, waiting)
    assert result.status == "Running" and result.output is None
    assert [p["id"] for p in result.custom_status["pendingApprovals"]] == ["call_refund"]
    with pytest.raises(NonDeterminismError) as caught:
        replay_history(create_app(lookup_as_activity=False), waiting)
    assert caught.value.step == 1


def test_a_generator_workflow_that_yields_in_another_order_breaks_its_runs_in_flight():
    # The recorded workflow ran the agent first (its first activity is invoke_model); the changed code yields its
    # own stock check first, so the history's first scheduled activity does not match.
    golden = _golden("workflow-approval")
    assert replay_history(app, golden).output == {"answer": "Yes, ORD-1 was delivered.", "decision": "approved",
                                                  "inStock": 4}
    with pytest.raises(NonDeterminismError) as caught:
        replay_history(create_app(stock_check_first=True), golden)
    error = caught.value
    assert error.step == 0
    assert error.recorded == {"kind": "activity", "name": "invoke_model"}
    assert error.requested == {"kind": "activity", "name": "check_stock"}
