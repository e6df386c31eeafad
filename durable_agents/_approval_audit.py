"""The approval audit activity: the run's side of the audit trail (internal).

A version-2 run (``OrchestrationInput.version``) calls the activity :data:`AUDIT_ACTIVITY` before it waits for a
turn's approvals (one ``requested`` record per approval, with the full arguments and their hash) and after the
approval timer expired some (one ``expired`` record each). Decisions are appended by the HTTP API, which knows who
decided. The records go to :func:`durable_agents._audit.get_audit_store` (SQLite locally, an Azure Table in Azure),
outside orchestration state, so they survive a purge; ``GET /api/runs/{id}/audit`` reads them.

Activity input: ``{"runId", "event": "requested" | "expired", "items": [{"id", "kind", "tool", "arguments",
"argumentsHash", "decision"?}]}``; output: the number of records appended (retries append nothing twice: records
are idempotent per key).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from typing import Any

import azure.durable_functions as df

from ._audit import AuditRecord, get_audit_store
from ._contracts import AUDIT_ACTIVITY, ApprovalDecision, ToolRetry, format_time
from ._runner.steps import ApprovalItem, ApprovalsCall
from ._telemetry import TRACE_MEMBER, emit_approval_span

__all__ = ["AUDIT_RETRY", "audit_expiry_input", "audit_request_input", "register_audit_activity", "write_audit"]

logger = logging.getLogger("durable_agents.audit")

AUDIT_RETRY = ToolRetry(max_attempts=5, first_retry_interval_ms=2000)
"""Retry options of the audit activity (5 attempts, 2 s apart)."""


def _item_json(item: ApprovalItem) -> dict[str, Any]:
    return {"id": item.id, "kind": "workflow" if item.kind == "workflow" else "tool", "tool": item.tool,
            "arguments": item.arguments, "argumentsHash": item.arguments_hash}


def audit_request_input(run_id: str, call: ApprovalsCall) -> dict[str, Any]:
    """The activity input that records the requests of ``call`` for run ``run_id``."""
    return {"runId": run_id, "event": "requested", "items": [_item_json(item) for item in call.items]}


def audit_expiry_input(run_id: str, expired: Sequence[tuple[ApprovalItem, ApprovalDecision]]) -> dict[str, Any]:
    """The activity input that records the expiry of ``expired`` (items with their ``expired`` decisions)."""
    return {"runId": run_id, "event": "expired", "items": [_item_json(item) for item, _ in expired]}


def write_audit(payload: Any) -> int:
    """The activity body: append one record per item of ``payload`` (module docstring); returns how many were new.

    A newly recorded expiry emits the ``approval <tool>`` span of that wait, from its ``requested`` record's time
    to now (:func:`durable_agents._telemetry.emit_approval_span`; ``payload["trace"]``, when the runner passes the
    run's ``trace`` member, places it in the start request's trace). Raises ``TypeError`` for a payload without
    ``runId`` / ``items`` and whatever the store raises (Durable retries the activity with :data:`AUDIT_RETRY`)."""
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict) or not isinstance(payload.get("runId"), str):
        raise TypeError("the audit activity expects {'runId', 'event', 'items'}")
    run_id, event = payload["runId"], str(payload.get("event") or "requested")
    store = get_audit_store()
    at = format_time(dt.datetime.now(dt.UTC))
    added = 0
    for item in payload.get("items") or []:
        approval_id = str(item.get("id") or "")
        record = AuditRecord(
            run_id=run_id, approval_id=approval_id, event=event, kind=str(item.get("kind") or "tool"),
            tool=str(item.get("tool") or ""), arguments_hash=str(item.get("argumentsHash") or ""),
            arguments=item.get("arguments") if event == "requested" else None,
            decision="expired" if event == "expired" else None, comment=None, actor_id=None, actor_name=None,
            at=at, key=f"{event}:{approval_id}",
        )
        new = store.append(record)
        added += bool(new)
        if new and event == "expired":  # the wait's span, once: a retried activity finds the record stored
            requested = next((r for r in store.list_for_run(run_id)
                              if r.approval_id == approval_id and r.event == "requested"), None)
            emit_approval_span(run_id, payload.get(TRACE_MEMBER),
                               {**item, "requestedAt": requested.at if requested is not None else at}, "expired", at)
    return added


def register_audit_activity(app: df.DFApp | df.Blueprint) -> None:
    """Register :data:`AUDIT_ACTIVITY` on ``app`` (``durable_agents.App`` does it)."""

    def durable_agents_audit(payload: Any) -> int:
        return write_audit(payload)

    durable_agents_audit.__doc__ = "Durable activity: append approval requests / expiries to the audit store."
    app.activity_trigger(input_name="payload", activity=AUDIT_ACTIVITY)(durable_agents_audit)
