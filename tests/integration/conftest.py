"""Fixtures for end-to-end tests: the real app on the local runtime (a separate process), the real OpenAI client
inside it, talking to a scripted OpenAI-compatible model server on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.model_server import ScriptedModelServer
from tests.support.polling import wait_for
from tests.support.runtime_process import REPO_ROOT, RuntimeProcess


@dataclass
class HttpAnswer:
    """A response: status, headers (lower-case names), raw body and, when it is JSON, the parsed body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


REVIEWER = "riley.reviewer"
"""The developer identity the tests decide approvals as (local runtime ``X-Dev-User``; roles Approver, Support)."""

SUPPORT_USER = "sam.support"
"""The developer identity the tests start runs as (support staff: may start runs for any customer)."""


def http(method: str, url: str, body: Any = None, *, raw: bytes | None = None, timeout: float = 30.0,
         user: str | None = REVIEWER, roles: str | None = None, content_type: str | None = "application/json",
         headers: dict[str, str] | None = None) -> HttpAnswer:
    """One HTTP request with urllib. ``body`` is sent as JSON; ``raw`` as is. Error statuses are returned.

    ``user`` is the local runtime's developer identity (``X-Dev-User``; ``None``: no identity), ``roles`` its
    ``X-Dev-Roles`` (``None``: the runtime's default, Approver and Support; ``""``: none). ``content_type`` is sent
    with a body (``None``: no ``Content-Type``)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None and content_type is not None:
        request.add_header("Content-Type", content_type)
    if user is not None:
        request.add_header("X-Dev-User", user)
    if roles is not None:
        request.add_header("X-Dev-Roles", roles)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpAnswer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return HttpAnswer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


class AppStack:
    """The app on the local runtime + the scripted model server it calls.

    ``api``: ``responses`` or ``chat_completions`` (setting ``OPENAI_API``). ``script``: the model server's script
    (tests/support/model_server.py). ``env``: extra settings. Files live in ``tmp``.
    """

    def __init__(self, tmp: Path, script: list[dict[str, Any]], *, api: str = "responses",
                 env: dict[str, str] | None = None):
        self.tmp = tmp
        self.model = ScriptedModelServer(script).start()
        self.ledger_path = tmp / "ledger.sqlite3"
        settings = {
            "OPENAI_BASE_URL": self.model.base_url,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_API": api,
            "AGENT_MODEL": "scripted-model",
            "AZURE_OPENAI_ENDPOINT": "",
            "REFUND_LEDGER_PATH": str(self.ledger_path),
            "APPROVAL_TIMEOUT": "P1D",
            "REFUND_APPROVAL_THRESHOLD": "100",
            "AUDIT_PATH": str(tmp / "audit.sqlite3"),
            **(env or {}),
        }
        self.runtime = RuntimeProcess(REPO_ROOT, state=tmp / "state.sqlite3", env=settings,
                                      log_path=tmp / "runtime.log")
        self.runtime.start()

    def url(self, path: str) -> str:
        return self.runtime.url(path)

    def start_run(self, text: str, run_id: str | None = None, agent: str = "support", *,
                  customer: str | None = None, user: str = SUPPORT_USER) -> str:
        """Start a run as ``user`` (support staff by default) for ``customer``; returns its id."""
        body: dict[str, Any] = {"input": text}
        if run_id:
            body["runId"] = run_id
        if customer:
            body["customer"] = customer
        answer = http("POST", self.url(f"/api/agents/{agent}/runs"), body, user=user)
        assert answer.status == 202, (answer.status, answer.body)
        return answer.json["id"]

    def run(self, run_id: str) -> dict[str, Any]:
        answer = http("GET", self.url(f"/api/runs/{run_id}"))
        assert answer.status == 200, (answer.status, answer.body)
        return answer.json

    def wait_status(self, run_id: str, *statuses: str, timeout: float = 60.0) -> dict[str, Any]:
        return wait_for(lambda: (lambda r: r if r["status"] in statuses else None)(self.run(run_id)),
                        timeout=timeout, what=f"run {run_id} in {statuses}")

    def requests_by_step(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for entry in self.model.requests:
            counts[entry["step"]] = counts.get(entry["step"], 0) + 1
        return counts

    def refunds(self, order_id: str) -> list[Any]:
        from activities.ledger import SqliteLedger

        return SqliteLedger(self.ledger_path).list_refunds(order_id)

    def close(self) -> None:
        try:
            self.runtime.stop()
        finally:
            self.model.stop()
