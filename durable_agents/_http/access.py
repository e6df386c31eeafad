"""Who may do what with a run, for the HTTP API (internal): the rules of docs/internals.md "HTTP API".

The caller comes from :func:`durable_agents._identity.caller_from_request`; roles and groups from the settings
``APPROVER_ROLES`` / ``APPROVER_GROUPS``, ``SUPPORT_ROLES`` / ``SUPPORT_GROUPS`` and ``SEPARATION_OF_DUTIES``
(read per request, never in orchestrator code).
"""

from __future__ import annotations

import azure.functions as func

from durable_agents._config import get_setting
from durable_agents._contracts import OrchestrationInput
from durable_agents._identity import Caller, caller_from_request, setting_list
from durable_agents._problems import Problem

__all__ = ["check_may_decide", "may_read", "require_caller", "started_by_id"]


def require_caller(req: func.HttpRequest) -> Caller:
    """The authenticated caller (:func:`durable_agents._identity.caller_from_request`); 401 ``unauthenticated``
    when there is none."""
    caller = caller_from_request(req)
    if caller is None:
        raise Problem("unauthenticated",
                      "This route needs an authenticated caller: in Azure a Microsoft Entra ID token (App Service "
                      "authentication); on the local runtime the developer identity header X-Dev-User.")
    return caller


def started_by_id(run_input: OrchestrationInput) -> str | None:
    """The principal id of ``startedBy`` in a run's input, or ``None`` (started without an identity)."""
    started = run_input.get("startedBy")
    return started.get("id") if isinstance(started, dict) and isinstance(started.get("id"), str) else None


def may_read(caller: Caller, run_input: OrchestrationInput) -> bool:
    """Whether ``caller`` may see a run: support staff and approvers see every run; others the runs they started
    and the runs that act for them (``customer`` equal to their email)."""
    if caller.is_support or caller.is_approver:
        return True
    customer = run_input.get("customer")
    return started_by_id(run_input) == caller.id or (caller.email is not None and customer == caller.email)


def check_may_decide(caller: Caller, run_input: OrchestrationInput) -> None:
    """403 ``not-an-approver`` unless the caller has an approver role or group (``APPROVER_ROLES`` /
    ``APPROVER_GROUPS``); 403 ``own-run`` when ``SEPARATION_OF_DUTIES`` (default true) and the caller started the
    run or is its customer."""
    if not caller.is_approver:
        raise Problem("not-an-approver",
                      "Deciding approvals needs an approver role "
                      f"({', '.join(sorted(setting_list('APPROVER_ROLES', 'Approver'))) or 'none configured'}) "
                      "or group.")
    if (get_setting("SEPARATION_OF_DUTIES", "true") or "true").lower() not in ("false", "0", "no", "off"):
        if started_by_id(run_input) == caller.id:
            raise Problem("own-run", "You started this run, so you may not decide its approvals (separation of "
                          "duties); ask another approver.")
        if caller.email is not None and run_input.get("customer") == caller.email:
            raise Problem("own-run", "This run acts for you, so you may not decide its approvals (separation of "
                          "duties); ask another approver.")
