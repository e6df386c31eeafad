"""App Service authentication ("Easy Auth") emulation for HTTP triggers, with a developer identity on loopback.

In Azure, App Service authentication validates the caller's Entra ID token in front of the app, passes the identity
in ``X-MS-CLIENT-PRINCIPAL`` (base64 of JSON ``{"auth_typ", "claims": [{"typ", "val"}...], "name_typ",
"role_typ"}``), ``X-MS-CLIENT-PRINCIPAL-ID``, ``-NAME`` and ``-IDP``, and drops such headers sent by clients
(learn.microsoft.com, "Work with user identities in Azure App Service authentication"). It sets the app setting
``WEBSITE_AUTH_ENABLED=True``. Locally there is no token to validate; instead:

* every request header whose name starts with ``x-ms-client-principal`` (any case) is removed, always;
* when emulation is on and the TCP peer (the socket's address, never ``X-Forwarded-For``) is loopback
  (127.0.0.0/8, ::1, or ::ffff:127.x), ``X-Dev-User: <name>`` (1-64 of ``[A-Za-z0-9._@-]``) becomes a developer
  principal: id ``dev-<name>``, name ``<name>``, idp ``dev``, claims ``nameidentifier`` (the id), ``name``,
  ``preferred_username`` and one ``roles`` claim per role. Roles come from ``X-Dev-Roles: a,b`` (each
  ``[A-Za-z0-9._-]{1,64}``); without the header they are ``Approver,Support``; an empty header means none;
* no ``X-Dev-*`` header (any name with that prefix) reaches the function; from a non-loopback peer
  (``--host 0.0.0.0``) or with ``--no-auth`` they are ignored. ``X-Dev-User`` or ``X-Dev-Roles`` sent twice is
  invalid.

Invalid developer header values raise :class:`InvalidDevIdentity` (the host answers 400 problem+json
``invalid-dev-identity``).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["DEFAULT_DEV_ROLES", "NAMEIDENTIFIER_CLAIM", "InvalidDevIdentity", "is_loopback_peer",
           "dev_principal_headers", "identity_headers"]

PRINCIPAL_PREFIX = "x-ms-client-principal"
DEV_PREFIX = "x-dev-"
DEV_USER = "x-dev-user"
DEV_ROLES = "x-dev-roles"
DEFAULT_DEV_ROLES = ("Approver", "Support")
NAMEIDENTIFIER_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
_USER = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_ROLE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class InvalidDevIdentity(ValueError):
    """An ``X-Dev-User`` / ``X-Dev-Roles`` value breaks the rules in the module docstring; the message says which
    header and rule, never the value."""


def is_loopback_peer(peername: Any) -> bool:
    """True when ``peername`` (``transport.get_extra_info("peername")``: ``(host, port)`` or the 4-tuple of IPv6,
    or None for a Unix socket) is a loopback address: 127.0.0.0/8, ``::1`` or an IPv4-mapped 127.x."""
    if not isinstance(peername, tuple | list) or not peername:
        return False
    host = str(peername[0]).split("%", 1)[0]   # drop an IPv6 zone id
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _roles(header: str | None) -> list[str]:
    if header is None:
        return list(DEFAULT_DEV_ROLES)
    if header.strip() == "":
        return []
    roles = [r.strip() for r in header.split(",")]
    if not all(_ROLE.fullmatch(r) for r in roles):
        raise InvalidDevIdentity("X-Dev-Roles must be a comma-separated list of roles of 1-64 characters "
                                 "[A-Za-z0-9._-] (or empty for no roles).")
    return roles


def dev_principal_headers(user: str, roles: Iterable[str]) -> dict[str, str]:
    """The four App Service principal headers for developer ``user`` with ``roles`` (rules in the module docstring;
    the caller validated both). ``X-MS-CLIENT-PRINCIPAL`` is standard base64 of compact JSON
    ``{"auth_typ": "dev", "claims": [...], "name_typ": "name", "role_typ": "roles"}``."""
    principal_id = f"dev-{user}"
    claims = [{"typ": NAMEIDENTIFIER_CLAIM, "val": principal_id}, {"typ": "name", "val": user},
              {"typ": "preferred_username", "val": user}]
    claims += [{"typ": "roles", "val": r} for r in roles]
    payload = {"auth_typ": "dev", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    encoded = base64.b64encode(json.dumps(payload, separators=(",", ":")).encode("utf-8")).decode("ascii")
    return {"X-MS-CLIENT-PRINCIPAL": encoded, "X-MS-CLIENT-PRINCIPAL-ID": principal_id,
            "X-MS-CLIENT-PRINCIPAL-NAME": user, "X-MS-CLIENT-PRINCIPAL-IDP": "dev"}


def identity_headers(headers: Iterable[tuple[str, str]], peername: Any, *, enabled: bool) -> dict[str, str]:
    """The headers the function sees: ``headers`` (name, value pairs as received) without any
    ``x-ms-client-principal*`` or ``x-dev-*`` header, plus the developer principal's four headers when ``enabled``,
    the peer is loopback and ``X-Dev-User`` is present. Raises :class:`InvalidDevIdentity` for an invalid or
    repeated ``X-Dev-User`` / ``X-Dev-Roles`` in that case (only then are they looked at)."""
    out: dict[str, str] = {}
    dev: dict[str, list[str]] = {DEV_USER: [], DEV_ROLES: []}
    for name, value in headers:
        low = name.lower()
        if low.startswith(PRINCIPAL_PREFIX):
            continue
        if low.startswith(DEV_PREFIX):
            if low in dev:
                dev[low].append(value)
            continue
        out[name] = value
    if not enabled or not dev[DEV_USER] or not is_loopback_peer(peername):
        return out
    if len(dev[DEV_USER]) > 1 or len(dev[DEV_ROLES]) > 1:
        raise InvalidDevIdentity("X-Dev-User and X-Dev-Roles may each be sent once.")
    user = dev[DEV_USER][0]
    roles = dev[DEV_ROLES][0] if dev[DEV_ROLES] else None
    if not _USER.fullmatch(user):
        raise InvalidDevIdentity("X-Dev-User must be 1-64 characters [A-Za-z0-9._@-].")
    out.update(dev_principal_headers(user, _roles(roles)))
    return out
