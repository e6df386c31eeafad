"""Who is calling: the caller's identity from App Service authentication, and what it may do (internal).

In Azure, App Service authentication (Easy Auth, configured by ``infra/``) validates the caller's Microsoft Entra ID
token before the request reaches the app, strips any client-sent ``X-MS-CLIENT-PRINCIPAL*`` headers and passes the
identity in ``X-MS-CLIENT-PRINCIPAL`` (base64 of ``{"auth_typ", "name_typ", "role_typ", "claims": [{"typ",
"val"}]}``), ``X-MS-CLIENT-PRINCIPAL-ID``, ``-NAME`` and ``-IDP``. The platform sets ``WEBSITE_AUTH_ENABLED=True``
when it does so; only then are these headers trusted (without it anyone could send them). The local runtime
emulates the same contract on loopback with a developer identity (docs/internals.md "Local runtime").

Policy (settings, read per request, never in orchestrator code):

* ``APPROVER_ROLES`` (default ``Approver``) and ``APPROVER_GROUPS`` (default none): comma lists; a caller with one
  of these app roles (the token's ``roles`` claim) or group object ids (``groups``) may decide approvals.
* ``SUPPORT_ROLES`` (default ``Support``) and ``SUPPORT_GROUPS``: may start runs for any customer and read every run.
* ``SEPARATION_OF_DUTIES`` (default ``true``): the principal who started a run, and the run's customer, may not
  decide its approvals.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from ._config import get_setting
from ._contracts import Principal

__all__ = [
    "Caller",
    "caller_from_request",
    "platform_identity_trusted",
    "setting_list",
]

_ROLE_CLAIMS = frozenset({"roles", "role", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
_GROUP_CLAIMS = frozenset({"groups", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"})
_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid",
              "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier", "sub")
_NAME_CLAIMS = ("name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "preferred_username")
_EMAIL_CLAIMS = ("email", "emails", "preferred_username", "upn",
                 "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
                 "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_MAX_HEADER_CHARS = 16_384


def platform_identity_trusted() -> bool:
    """Whether the platform authenticates callers: ``WEBSITE_AUTH_ENABLED`` is ``true`` (any case), as App Service
    sets it when authentication is on and the local runtime sets it when it emulates authentication."""
    return (get_setting("WEBSITE_AUTH_ENABLED") or "").lower() == "true"


def setting_list(name: str, default: str = "") -> frozenset[str]:
    """The comma-separated setting ``name`` as a set of non-blank, stripped items."""
    value = get_setting(name, default) or ""
    return frozenset(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    ``id``: the principal id (Entra object id; ``dev-<name>`` locally). ``name``: display name or ``None``.
    ``email``: the email / user principal name claim when it looks like an email address, lower-cased.
    ``roles`` / ``groups``: app role values and group ids from the token. ``idp``: identity provider (``aad``).
    """

    id: str
    name: str | None = None
    email: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)
    idp: str | None = None

    def principal(self) -> Principal:
        """``{"id", "name"}`` as runs and decisions record it."""
        return {"id": self.id, "name": self.name}

    def _has(self, roles_setting: str, default_roles: str, groups_setting: str) -> bool:
        return bool(self.roles & setting_list(roles_setting, default_roles)
                    or self.groups & setting_list(groups_setting))

    @property
    def is_approver(self) -> bool:
        """Whether the caller may decide approvals (``APPROVER_ROLES`` / ``APPROVER_GROUPS``)."""
        return self._has("APPROVER_ROLES", "Approver", "APPROVER_GROUPS")

    @property
    def is_support(self) -> bool:
        """Whether the caller may act for any customer and read every run (``SUPPORT_ROLES`` / ``SUPPORT_GROUPS``)."""
        return self._has("SUPPORT_ROLES", "Support", "SUPPORT_GROUPS")


def _decode_principal(header: str) -> dict[str, Any] | None:
    if len(header) > _MAX_HEADER_CHARS:
        return None
    try:
        data = json.loads(base64.b64decode(header + "=" * (-len(header) % 4), validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _claims(data: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for claim in data.get("claims") or []:
        if isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str):
            found.append((claim["typ"], claim["val"]))
    return found


def caller_from_request(req: func.HttpRequest) -> Caller | None:
    """The authenticated caller of ``req``, or ``None`` when there is none (or it cannot be trusted).

    Only when :func:`platform_identity_trusted`: the id is ``X-MS-CLIENT-PRINCIPAL-ID`` (else the object id /
    name identifier claim), the name ``X-MS-CLIENT-PRINCIPAL-NAME`` (else the ``name`` claim); roles and groups
    come from the claims of ``X-MS-CLIENT-PRINCIPAL`` (claim types ``roles`` and the principal's ``role_typ``;
    ``groups``). A malformed ``X-MS-CLIENT-PRINCIPAL`` counts as no identity.
    """
    if not platform_identity_trusted():
        return None
    headers = req.headers
    encoded = headers.get("x-ms-client-principal")
    data = _decode_principal(encoded) if encoded else {}
    if data is None:
        return None
    claims = _claims(data)
    role_types = set(_ROLE_CLAIMS)
    if isinstance(data.get("role_typ"), str):
        role_types.add(data["role_typ"])

    def first(types: tuple[str, ...]) -> str | None:
        for wanted in types:
            for typ, val in claims:
                if typ == wanted and val.strip():
                    return val.strip()
        return None

    principal_id = (headers.get("x-ms-client-principal-id") or "").strip() or first(_ID_CLAIMS)
    if not principal_id or len(principal_id) > 256:
        return None
    name = (headers.get("x-ms-client-principal-name") or "").strip() or first(_NAME_CLAIMS)
    email = None
    for candidate in (first(_EMAIL_CLAIMS), name):
        if candidate and _EMAIL.match(candidate.lower()):
            email = candidate.lower()
            break
    return Caller(
        id=principal_id,
        name=name[:256] if name else None,
        email=email,
        roles=frozenset(val for typ, val in claims if typ in role_types),
        groups=frozenset(val for typ, val in claims if typ in _GROUP_CLAIMS),
        idp=(headers.get("x-ms-client-principal-idp") or data.get("auth_typ") or None),
    )
