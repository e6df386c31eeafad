"""An in-process, virtual-clock driver of the local runtime's extension emulation, for orchestrator tests.

It drives a real ``azure-functions-durable`` orchestrator episode by episode with the same pure modules that
``python -m local_runtime`` uses, so tests of agent orchestrators and the local runtime exercise one emulation of
the Durable extension (durable-functions-protocol.md):

* :mod:`local_runtime.events`: history event shapes and the orchestration trigger's context JSON (§2.2-2.3);
* :mod:`local_runtime.worker`: calling the orchestrator (its ``OrchestratorState``, or the ``$OutOfProcData$`` of a
  raised error, §2.1) and running activities (``ActivityTriggerConverter`` in and out, ``TaskFailed`` texts, §4.3);
* :mod:`local_runtime.replay`: the extension's replay of the returned actions (§3.2: sequence ids, ``WhenAll`` that
  waits for every child, ``WhenAny``, retry interceptor timers, cancelled timers, nondeterminism, completion only
  when no task is open).

What is left here is the dispatcher, the part ``local_runtime.engine`` plays over SQLite: in-memory message queues,
a virtual clock (starting at :data:`EPOCH`, 1 ms per episode; timers fire when the clock reaches them), activities
run inline in the calling thread as soon as their episode commits, and commits that fail on request. No HTTP, no
SQLite, no threads. Sub-orchestrations (§3.7: the child starts in the same round, its completion or failure goes
back to the parent) and continue-as-new (§3.8: a fresh history and execution id, ``Instance.generations`` counts
them) are driven as the engine drives them. Simplifications (none visible to the SDK): all due messages of an
instance go into one episode (or one per episode with ``one_message_per_episode``); no entities, suspend or
terminate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from local_runtime import events as ev
from local_runtime import worker
from local_runtime.app_loader import FunctionInfo
from local_runtime.replay import NewAction, replay

from .._contracts import (
    INVOKE_MODEL_ACTIVITY,
    RUN_VERSION,
    ApprovalEvent,
    OrchestrationInput,
    PendingApproval,
    Principal,
    approval_event_name,
)
from .._registry import AgentRegistry
from .._run_settings import settings_snapshot
from ._functions import durable_registry
from ._model import ScriptedModel

__all__ = ["EPISODE_TICK", "EPOCH", "Instance", "ReplayHarness"]

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
"""Where the harness's virtual clock starts (aware UTC)."""
EPISODE_TICK = dt.timedelta(milliseconds=1)
"""How far the virtual clock advances for every episode."""

_TERMINAL = ("Completed", "Failed", "Terminated")
_STATUS = {"completed": (1, "Completed"), "failed": (3, "Failed"), "terminated": (5, "Terminated")}


@dataclasses.dataclass
class _Message:
    due: dt.datetime
    event: dict[str, Any]
    order: int


@dataclasses.dataclass
class Instance:
    """One orchestration instance in the harness (updated in place as the harness runs it).

    ``status`` is the Durable runtime status: ``Pending``, ``Running``, ``Completed``, ``Failed`` or
    ``Terminated``. ``output`` is the parsed output when Completed (an agent run's ``durable_agents.
    OrchestrationOutput``: ``finalOutput``, ``lastAgent``, ``turns``, ``usage``, ``demo``) and the failure text when
    Failed. ``history`` is the committed history (events as :mod:`local_runtime.events` builds them);
    ``custom_status`` the parsed custom status of the last committed episode (an agent run's ``durable_agents.
    CustomStatus``) and ``custom_statuses`` those of every committed episode; ``episode_actions`` per committed
    episode the new actions (``{"id", "name", "input"}`` for an activity, with its parsed input; ``{"id",
    "timer": <FireAt text>}`` for a timer). ``last_state`` is the ``OrchestratorState`` JSON text of the last
    invocation (committed or not); ``episodes`` counts committed episodes and ``failed_commits`` the episodes whose
    commit failed (:attr:`ReplayHarness.failing_commits`). ``cpu_seconds`` is the calling thread's CPU time and
    ``invocation_process_cpu_seconds`` the process CPU time (all threads), in seconds, spent inside the
    orchestrator invocations.
    """

    instance_id: str
    name: str
    input_text: str | None
    execution_id: str = ""
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: str = "Pending"
    output: Any = None
    custom_status: Any = None
    messages: list[_Message] = dataclasses.field(default_factory=list)
    episodes: int = 0
    episode_actions: list[list[dict[str, Any]]] = dataclasses.field(default_factory=list)
    last_state: str | None = None
    failed_commits: int = 0
    custom_statuses: list[Any] = dataclasses.field(default_factory=list)
    cpu_seconds: float = 0.0
    invocation_process_cpu_seconds: float = 0.0
    parent: tuple[str, int] | None = None  # (parent instance id, its SubOrchestrationInstanceCreated id)
    generations: int = 1  # executions so far: 1 + the times it continued as new
    past_history_bytes: list[int] = dataclasses.field(default_factory=list)  # UTF-8 JSON of each ended generation


class ReplayHarness:
    """Runs the orchestrations of a function app in-process, episode by episode, on a virtual clock.

    ``harness.start_run("accounts", "Close account A-1")`` starts an agent run as the HTTP API does (``start(name,
    value)`` any orchestration); :meth:`run` processes due messages: activities complete at once and, when
    ``advance_timers`` is true, the clock jumps to the next durable timer (model retries, approval expiry).
    :meth:`approve` / :meth:`reject` decide an approval as the HTTP API does and :meth:`raise_event` raises any
    external event the way the Python client encodes it (double JSON encoding, protocol §1).

    Set :attr:`failing_commits` to ``n`` to make the next ``n`` episodes run the orchestrator but fail to commit
    (nothing of them is kept; their messages are delivered again, as when DTFx abandons a work item).
    :attr:`activity_calls` lists ``(name, input value)`` of every activity execution, :attr:`clock` is the virtual
    time (aware UTC) and :attr:`instances` maps instance ids to :class:`Instance`.
    """

    def __init__(self, app: Any, *, model: ScriptedModel | None = None, one_message_per_episode: bool = False,
                 after_invocation: Callable[[], None] | None = None) -> None:
        """Drive the orchestrations of ``app``.

        Args:
            app: the function app: a ``durable_agents.App``, a ``df.DFApp``, any ``azure.functions``
                ``FunctionRegister``. Its functions are read once per app object, so one app may serve many
                harnesses (and :func:`~durable_agents.testing.replay_history`).
            model: answers every ``invoke_model`` activity instead of the app's own (``durable_agents.App``
                registers the real one); without it the app's activities run as registered.
            one_message_per_episode: deliver one message per episode instead of all due ones (interleavings).
            after_invocation: called right after each orchestrator invocation, inside its CPU measurement (the
                benchmark waits there for workers that unwind after the invocation returned).
        """
        self.app = app
        self.model = model
        self.after_invocation = after_invocation
        self.failing_commits = 0
        self.registry = durable_registry(app)
        if model is not None:
            self.registry.activities[INVOKE_MODEL_ACTIVITY.lower()] = model._activity_info()
        self._activity_names = [f.durable_name for f in self.registry.activities.values() if f.durable_name]
        self._orchestrator_names = [f.durable_name for f in self.registry.orchestrators.values() if f.durable_name]
        app_dir = getattr(app, "app_dir", None)
        self.app_dir = str(app_dir if app_dir is not None else Path.cwd())
        self.instances: dict[str, Instance] = {}
        self.clock = EPOCH
        self.one_message_per_episode = one_message_per_episode
        self._order = 0
        self.activity_calls: list[tuple[str, Any]] = []

    # --- client-side operations
    def start(self, name: str, value: Any, instance_id: str | None = None) -> Instance:
        """Start orchestrator ``name`` with input ``value`` the way the Python client does (``df_dumps`` once, then
        stored as JSON text). ``instance_id`` defaults to a new uuid4 hex. Returns the new :class:`Instance`."""
        instance_id = instance_id or uuid.uuid4().hex
        input_text = json.dumps(json.dumps(value))  # ExecutionStarted.Input: JSON text of a JSON string (§1)
        instance = Instance(instance_id, name, input_text, execution_id=uuid.uuid4().hex)
        self.instances[instance_id] = instance
        self._queue(instance, self.clock,
                    ev.execution_started(instance_id, instance.execution_id, name, input_text, self.clock))
        return instance

    def start_run(self, agent_name: str, input: Any, *, settings: Mapping[str, str] | None = None,
                  run_id: str | None = None, customer: str | None = None,
                  started_by: Principal | None = None) -> Instance:
        """Start a run of a registered agent exactly as ``POST /api/agents/{agent}/runs`` does.

        The orchestration input is ``{"agent", "input", "settings", "version", "customer", "startedBy"}``
        (``durable_agents.OrchestrationInput``; ``version`` the current run version, ``customer`` whom the run acts
        for, ``ToolCall.customer`` of its tools, ``started_by`` the starting principal ``{"id", "name"}``).
        With a ``durable_agents.App`` the agent is looked up in ``app.registry`` (its orchestrator and its
        settings); with another app ``agent_name`` is taken as the orchestrator name. ``settings`` is the run's
        settings snapshot (``durable_agents.run_setting`` reads it); by default it is the snapshot the HTTP API
        takes from the environment: ``APPROVAL_TIMEOUT``, ``MODEL_MAX_ATTEMPTS`` and the agent's registered
        settings, those that are set. ``run_id`` defaults to a new uuid4 hex. Nothing runs until :meth:`run`.
        Raises ``KeyError`` for an agent the App did not register.
        """
        registry = getattr(self.app, "registry", None)
        orchestrator, agent = agent_name, agent_name
        names: tuple[str, ...] = ()
        if isinstance(registry, AgentRegistry):
            entry = registry.get(agent_name)
            if entry is None:
                known = ", ".join(e.name for e in registry.list()) or "none"
                raise KeyError(f"the app registers no agent named {agent_name!r} (registered: {known})")
            orchestrator, agent = entry.orchestrator, entry.name
            names = entry.settings
        snapshot = settings_snapshot(names) if settings is None else dict(settings)
        run_input: OrchestrationInput = {"agent": agent, "input": input, "settings": snapshot,
                                         "version": RUN_VERSION, "customer": customer, "startedBy": started_by}
        return self.start(orchestrator, run_input, run_id)

    def raise_event(self, instance_id: str, name: str, data: Any) -> None:
        """``DurableOrchestrationClient.raise_event``: the orchestrator receives ``json.dumps(data)`` (a str)."""
        self._queue(self.instances[instance_id], self.clock,
                    ev.event_raised(name, json.dumps(json.dumps(data)), self.clock))

    def pending_approvals(self, instance: Instance | str) -> list[PendingApproval]:
        """The approvals the run waits for, from its custom status (``durable_agents.PendingApproval``: ``id``,
        ``tool``, ``arguments``, ``requestedAt``, ``expiresAt``); ``[]`` when there are none."""
        status = self._instance(instance).custom_status
        pending = status.get("pendingApprovals") if isinstance(status, Mapping) else None
        return list(pending or [])

    def approve(self, instance: Instance | str, approval_id: str, comment: str | None = None, *,
                decided_by: Principal | None = None) -> None:
        """Approve ``approval_id`` as ``POST /api/runs/{id}/approvals/{approvalId}`` with ``"approved": true``
        does: raises ``approval:<approval_id>`` with ``{"approved": true, "comment", "decidedBy", "argumentsHash"}``
        (the pending approval's hash). Call :meth:`run` to deliver it. Raises ``ValueError`` when the run does not
        wait for that approval."""
        self._decide(instance, approval_id, True, comment, decided_by)

    def reject(self, instance: Instance | str, approval_id: str, comment: str | None = None, *,
               decided_by: Principal | None = None) -> None:
        """Reject ``approval_id`` (see :meth:`approve`): the model reads that the call was rejected, with
        ``comment``."""
        self._decide(instance, approval_id, False, comment, decided_by)

    def _decide(self, instance: Instance | str, approval_id: str, approved: bool, comment: str | None,
                decided_by: Principal | None) -> None:
        target = self._instance(instance)
        pending = {p["id"]: p for p in self.pending_approvals(target)}
        if approval_id not in pending:
            raise ValueError(f"run {target.instance_id!r} does not wait for approval {approval_id!r} "
                             f"(pending: {list(pending) or 'none'})")
        payload: ApprovalEvent = {"approved": approved, "comment": comment, "decidedBy": decided_by,
                                  "argumentsHash": pending[approval_id].get("argumentsHash")}
        self.raise_event(target.instance_id, approval_event_name(approval_id), payload)

    def _instance(self, instance: Instance | str) -> Instance:
        return self.instances[instance] if isinstance(instance, str) else instance

    def _queue(self, instance: Instance, due: dt.datetime, event: dict[str, Any]) -> None:
        self._order += 1
        instance.messages.append(_Message(due, event, self._order))

    # --- the dispatcher
    def run(self, *, advance_timers: bool = True, max_episodes: int = 10_000) -> None:
        """Run episodes until no message is due. With ``advance_timers`` the clock moves on to the next timer when
        nothing else is due (so approvals expire); without it the run stops where it waits for a timer or an
        event. Raises ``RuntimeError`` after ``max_episodes`` episodes."""
        for _ in range(max_episodes):
            if not self.step(advance_timers=advance_timers):
                return
        raise RuntimeError("too many episodes")

    def step(self, *, advance_timers: bool = True) -> bool:
        """Run one round of episodes (one per instance with due messages); False when nothing is left to do."""
        for _ in range(2):
            progressed = False
            for instance in list(self.instances.values()):
                if instance.status in _TERMINAL:
                    instance.messages.clear()  # e.g. the TimerFired of a cancelled timer: dropped
                    continue
                due = sorted((m for m in instance.messages if m.due <= self.clock), key=lambda m: (m.due, m.order))
                if due:
                    if self.one_message_per_episode:
                        due = due[:1]
                    for message in due:
                        instance.messages.remove(message)
                    self._episode(instance, [m.event for m in due])
                    progressed = True
            if progressed:
                return True
            pending = [m.due for i in self.instances.values() if i.status not in _TERMINAL for m in i.messages]
            if not pending or not advance_timers:
                return False
            self.clock = max(self.clock, min(pending))
        return False

    def _episode(self, instance: Instance, messages: list[dict[str, Any]]) -> None:
        """One episode, as ``local_runtime.engine`` runs it: invoke, replay the actions, commit, dispatch."""
        self.clock += EPISODE_TICK
        now = self.clock
        started = ev.orchestrator_started(now)
        sdk_history = instance.history + [started] + [dict(m, IsPlayed=False) for m in messages]
        if instance.status == "Pending":
            instance.status = "Running"
        info = self.registry.orchestrator(instance.name)
        if info is None:
            raise RuntimeError(f"no orchestrator named {instance.name!r}")
        body = ev.context_json(sdk_history, instance.instance_id, instance.input_text)
        cpu_start, process_cpu_start = time.thread_time(), time.process_time()
        try:
            output = worker.orchestrator_output(info.fn, body, info.trigger_name or "context")
        finally:
            if self.after_invocation is not None:
                self.after_invocation()
            instance.cpu_seconds += time.thread_time() - cpu_start
            instance.invocation_process_cpu_seconds += time.process_time() - process_cpu_start
        state = worker.state_from_output(output)
        instance.last_state = json.dumps(state)
        if self.failing_commits > 0:
            # The episode ran but its commit failed (e.g. a storage error): nothing of it is kept, the messages
            # are delivered again, and no activity was sent (activity messages are only sent by a commit).
            self.failing_commits -= 1
            instance.failed_commits += 1
            for message in messages:
                self._queue(instance, now, message)
            return
        decision = replay(sdk_history, state, orchestrator_name=info.durable_name or instance.name,
                          instance_id=instance.instance_id, execution_id=instance.execution_id,
                          activities=self._activity_names, orchestrators=self._orchestrator_names)
        instance.episodes += 1
        instance.custom_status = state.get("customStatus")
        instance.custom_statuses.append(instance.custom_status)
        committed = [started] + [dict(m, IsPlayed=True) for m in messages]
        scheduled: list[dict[str, Any]] = []
        for action in decision.new_actions:
            committed.append(self._dispatch(instance, action, now, scheduled))
        outcome = decision.outcome
        if outcome is not None and outcome.kind == "continued_as_new":
            # A new execution: fresh history and execution id, the new input, the same parent (protocol §3.8).
            ended = instance.history + committed + [{"EventType": ev.ET.ContinueAsNew, "EventId": outcome.event_id,
                                                     "Result": outcome.result}]
            instance.past_history_bytes.append(len(ev.compact(ended).encode("utf-8")))
            instance.history = []
            instance.execution_id = uuid.uuid4().hex
            instance.input_text = outcome.result
            instance.generations += 1
            instance.episode_actions.append(scheduled)
            self._queue(instance, now, ev.execution_started(instance.instance_id, instance.execution_id,
                                                            instance.name, outcome.result, now,
                                                            self._parent_event(instance)))
            return
        if outcome is not None:
            code, status = _STATUS[outcome.kind]
            committed.append(ev.execution_completed(outcome.event_id, code, outcome.result, now))
            instance.status = status
            instance.output = json.loads(outcome.result) if code == 1 and outcome.result is not None else outcome.result
            if instance.parent is not None and outcome.kind in ("completed", "failed"):
                parent_id, task_id = instance.parent
                notice = (ev.suborch_completed(task_id, outcome.result, now) if outcome.kind == "completed"
                          else ev.suborch_failed(task_id, outcome.result, outcome.details, now))
                self._queue(self.instances[parent_id], now, notice)
        committed.append(ev.orchestrator_completed(now))
        instance.history.extend(committed)
        instance.episode_actions.append(scheduled)

    def _parent_event(self, instance: Instance) -> dict[str, Any] | None:
        """The ``ParentInstance`` member of a child's ``ExecutionStarted`` (protocol §3.7), or None."""
        if instance.parent is None:
            return None
        parent = self.instances[instance.parent[0]]
        return {"Name": parent.name, "OrchestrationInstance": {"InstanceId": parent.instance_id,
                                                               "ExecutionId": parent.execution_id},
                "TaskScheduleId": instance.parent[1], "Version": ""}

    def _dispatch(self, instance: Instance, action: NewAction, now: dt.datetime,
                  scheduled: list[dict[str, Any]]) -> dict[str, Any]:
        """The history event of a new action; an activity runs at once, a timer's ``TimerFired`` is queued."""
        if action.kind == "activity" and action.name is not None:
            scheduled.append({"id": action.id, "name": action.name,
                              "input": json.loads(action.input) if action.input else None})
            self._run_activity(instance, action, now)
            return ev.task_scheduled(action.id, action.name, now)
        if action.kind == "timer" and action.fire_at is not None:
            scheduled.append({"id": action.id, "timer": ev.fmt_time(action.fire_at)})
            self._queue(instance, max(action.fire_at, now), ev.timer_fired(action.id, action.fire_at, now))
            return ev.timer_created(action.id, action.fire_at, now)
        if action.kind == "suborchestration" and action.name is not None and action.instance_id is not None:
            child_input = None if action.input is None else ev.compact(action.input)
            scheduled.append({"id": action.id, "suborchestration": action.name, "instanceId": action.instance_id,
                              "input": json.loads(child_input) if child_input else None})
            info = self.registry.orchestrator(action.name)
            child = Instance(action.instance_id, info.durable if info else action.name, child_input,
                             execution_id=uuid.uuid4().hex, parent=(instance.instance_id, action.id))
            self.instances[child.instance_id] = child
            self._queue(child, now, ev.execution_started(child.instance_id, child.execution_id, child.name,
                                                         child_input, now, self._parent_event(child)))
            return ev.suborch_created(action.id, action.name, action.instance_id, now)
        raise NotImplementedError(f"{action.kind} actions are not driven by the replay harness")

    def _run_activity(self, instance: Instance, action: NewAction, now: dt.datetime) -> None:
        info: FunctionInfo | None = self.registry.activity(action.name or "")
        if info is None:  # the replay fails the orchestration for unknown names before any is dispatched
            raise RuntimeError(f"no activity named {action.name!r}")
        self.activity_calls.append((action.name or "", worker.decode_activity_input(action.input)))
        ok, text, details = worker.run_activity_inline(info, action.input, self.app_dir)
        if ok:
            event = ev.task_completed(action.id, text, now)
        else:
            event = ev.task_failed(action.id, text or "", details, now)
        self._queue(instance, now, event)

    # --- inspection helpers
    def comparable_history(self, instance_id: str) -> list[tuple[tuple[str, str], ...]]:
        """The instance's history without timestamps, ``IsPlayed`` and execution ids, for comparing two runs of
        the same scenario: one tuple of sorted ``(member, JSON text)`` pairs per event."""
        out = []
        for event in self.instances[instance_id].history:
            out.append(tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in event.items()
                                    if k not in ("Timestamp", "IsPlayed", "OrchestrationInstance"))))
        return out
