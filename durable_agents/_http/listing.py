"""``GET runs``: every run reachable, newest first, through a continuation token (internal).

The Python Durable client's ``get_status_all`` / ``get_status_by`` read only the first page of the extension's
``GET instances/`` (100 instances, protocol doc §5: the ``x-ms-continuation-token`` header is ignored), so new runs
disappeared from the listing. Here the extension's route is read directly (same URL, ``top`` and the continuation
header), every page of the instances created at or before the cursor, and the runs are ordered newest first by
``(createdTime, instance id)``. The token the API returns is that pair for the last run of the page, base64url:
the next page holds the runs strictly after it in that order, so a run created meanwhile never shifts a page and
none is listed twice. The extension reports ``createdTime`` in whole seconds, so runs created within one second are
ordered by id (descending) among themselves. Cost: one scan of the instances older than the cursor per page
(fine for thousands of runs; a run index would be the next step beyond).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from azure.durable_functions import DurableOrchestrationClient, OrchestrationRuntimeStatus
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from durable_agents._problems import Problem

__all__ = ["EXTENSION_PAGE_SIZE", "decode_token", "encode_token", "list_page", "read_instances"]

EXTENSION_PAGE_SIZE = 500
"""``top`` of each request to the extension's ``GET instances/``."""

_MAX_EXTENSION_PAGES = 400
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utc(value: dt.datetime | None) -> dt.datetime:
    if value is None:
        return _EPOCH
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def encode_token(created: dt.datetime, instance_id: str) -> str:
    """The continuation token after the run ``(created, instance_id)``: base64url (no padding) of
    ``{"c": <ISO created, microseconds>, "i": <instance id>}``."""
    text = json.dumps({"c": _utc(created).isoformat(timespec="microseconds"), "i": instance_id},
                      separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[dt.datetime, str]:
    """Inverse of :func:`encode_token`; 400 ``invalid-continuation-token`` for anything it did not write."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        created = _utc(dt.datetime.fromisoformat(data["c"]))
        instance_id = data["i"]
        if not isinstance(instance_id, str):
            raise TypeError
        return created, instance_id
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise Problem("invalid-continuation-token",
                      "The continuationToken is not one this API returned; start again without it.") from None


async def read_instances(
    client: DurableOrchestrationClient,
    runtime_status: Iterable[OrchestrationRuntimeStatus] = (),
    created_to: dt.datetime | None = None,
) -> list[DurableOrchestrationStatus]:
    """Every instance (with its input) whose runtime status is one of ``runtime_status`` (all when empty) and
    that was created at or before ``created_to``, following the extension's continuation tokens.

    A client without the extension's RPC URL (a test double) is asked with ``get_status_by`` /
    ``get_status_all``. Raises ``RuntimeError`` when the extension answers anything but 200."""
    statuses = list(runtime_status)
    bindings = getattr(client, "_orchestration_bindings", None)
    base = getattr(bindings, "rpc_base_url", None)
    if not isinstance(base, str) or not base:
        if statuses or created_to is not None:
            return list(await client.get_status_by(runtime_status=statuses or None, created_time_to=created_to))
        return list(await client.get_status_all())
    params = {"showInput": "true", "top": str(EXTENSION_PAGE_SIZE)}
    if statuses:
        params["runtimeStatus"] = ",".join(s.value for s in statuses)
    if created_to is not None:
        params["createdTimeTo"] = _utc(created_to).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    found: list[DurableOrchestrationStatus] = []
    token: str | None = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        for _ in range(_MAX_EXTENSION_PAGES):
            headers = {"x-ms-continuation-token": token} if token else {}
            async with http.get(f"{base}instances/", params=params, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"listing instances answered HTTP {response.status}")
                body = await response.json(content_type=None)
                token = response.headers.get("x-ms-continuation-token")
            found.extend(DurableOrchestrationStatus.from_json(item) for item in body or [])
            if not token or token.strip().lower() == "null":
                break
    return found


async def list_page(
    client: DurableOrchestrationClient,
    runtime_status: Iterable[OrchestrationRuntimeStatus],
    view: Callable[[DurableOrchestrationStatus], dict[str, Any] | None],
    top: int,
    token: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of runs, newest first: ``(runs, next token or None)``.

    ``view`` turns an instance into its ``<run>`` JSON, or ``None`` to leave it out (not an agent run, filtered,
    not visible to the caller); ``top`` is the page size; ``token`` the cursor from the previous page (module
    docstring)."""
    after = decode_token(token) if token else None
    # Status times have whole seconds (the extension writes ToString("s")), the filter compares exact times: ask up
    # to one second past the cursor and leave the rest to the (created, id) comparison below.
    created_to = after[0] + dt.timedelta(seconds=1) if after else None
    instances = await read_instances(client, runtime_status, created_to)
    rows: list[tuple[dt.datetime, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for status in instances:
        instance_id = status.instance_id or ""
        if instance_id in seen:
            continue
        seen.add(instance_id)
        created = _utc(status.created_time)
        if after is not None and (created, instance_id) >= after:
            continue
        run = view(status)
        if run is not None:
            rows.append((created, instance_id, run))
    rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
    page = rows[:top]
    next_token = encode_token(page[-1][0], page[-1][1]) if len(rows) > top else None
    return [run for _, _, run in page], next_token
