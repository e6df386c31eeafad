"""Reading the Bicep in ``infra/`` as data, for the infrastructure tests.

The Bicep CLI is not available here, so the tests parse every ``.bicep`` file with ``pycep-parser`` (0.7) and walk
the JSON it produces. What that JSON looks like, as far as these tests rely on it:

* ``doc["parameters"][name]`` -> ``{"decorators": [{"type", "argument"}], "type", "default"}``
* ``doc["variables"][name]["value"]``, ``doc["outputs"][name]`` -> ``{"decorators", "type", "value"}``
* ``doc["resources"][symbol]`` -> ``{"type", "api_version", "existing", "config"}``; ``config`` is the resource
  body, or ``{"condition": <expr>, "config": <body>}`` for ``= if (...) {...}``, or
  ``{"loop_type": {...}, "condition": ..., "config": <body>}`` for ``[for ...]``.
* ``doc["modules"][symbol]`` -> ``{"detail": {"path"}, "config"}`` with the same condition wrapping.
* Expressions: a plain string is a literal **or** an identifier (pycep does not tell them apart); operators are
  ``{"operator": {"type", "operands"}}`` (``a.b.c`` is right-nested ``property_accessor``); function calls are
  ``{"function": {"type", "parameters"}}``; string interpolation stays raw text (``"x-${name}"``).

Known pycep limits, and how the tests cope: nested child resources declared inside a parent are not all kept
(so ``infra/`` declares children at top level with ``parent:``); interpolated strings are not parsed (the tests
compare them as text); a module's ``dependsOn`` is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from pycep import BicepParser

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"

__all__ = [
    "auth_properties",
    "excluded_by",
    "one_resource",
    "INFRA",
    "REPO_ROOT",
    "Resource",
    "bicep_files",
    "decorator",
    "dotted",
    "load",
    "resources",
    "walk",
]


def bicep_files() -> list[Path]:
    """Every ``.bicep`` file under ``infra/``, sorted."""
    return sorted(INFRA.rglob("*.bicep"))


@cache
def _parse(path: str) -> dict[str, Any]:
    return cast(dict[str, Any], BicepParser().parse(file_path=Path(path)))


def load(relative: str) -> dict[str, Any]:
    """Parse ``infra/<relative>`` (e.g. ``"app/storage.bicep"``) and return pycep's JSON (cached per process).

    Raises ``ValueError`` (from pycep) when the file is not valid Bicep as pycep's grammar understands it.
    """
    return _parse(str(INFRA / relative))


@dataclass(frozen=True)
class Resource:
    """One resource declaration, with its ``if`` condition and ``for`` loop unwrapped.

    ``body`` is the object after ``=`` (``name``, ``properties``, ...); ``condition`` is the ``if`` expression or
    ``None``; ``loop`` is pycep's ``loop_type`` (``{"type", "detail": {"item_name", "array_name", ...}}``) or
    ``None``.
    """

    symbol: str
    type: str
    api_version: str
    existing: bool
    body: dict[str, Any]
    condition: Any
    loop: dict[str, Any] | None


def _unwrap(config: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    if "loop_type" in config:
        return config["config"], config.get("condition"), config["loop_type"]
    if set(config) == {"condition", "config"}:
        return config["config"], config["condition"], None
    return config, None, None


def resources(doc: dict[str, Any], type_: str | None = None) -> list[Resource]:
    """The resources declared in ``doc`` (optionally only those of ARM type ``type_``), in file order."""
    found = []
    for symbol, res in doc.get("resources", {}).items():
        if type_ is not None and res["type"] != type_:
            continue
        body, condition, loop = _unwrap(res["config"])
        found.append(Resource(symbol, res["type"], res["api_version"], res["existing"], body, condition, loop))
    return found


def module_call(doc: dict[str, Any], symbol: str) -> tuple[str, dict[str, Any], Any]:
    """``(path, body, condition)`` of module ``symbol`` in ``doc``; ``body`` holds ``name``, ``scope``, ``params``."""
    mod = doc["modules"][symbol]
    body, condition, _ = _unwrap(mod["config"])
    return mod["detail"]["path"], body, condition


def dotted(expr: Any) -> str | None:
    """Flatten a property/index accessor chain to text: ``identity.outputs.principalId``,
    ``account.properties.endpoints['OpenAI Language Model Instance API']``; a plain string is returned as is;
    anything else (function calls, operators) gives ``None``."""
    if isinstance(expr, str):
        return expr
    if not isinstance(expr, dict) or "operator" not in expr:
        return None
    op = expr["operator"]
    left, right = op["operands"].get("operand_1"), op["operands"].get("operand_2")
    if op["type"] == "property_accessor":
        head, tail = dotted(left), dotted(right)
        return None if head is None or tail is None else f"{head}.{tail}"
    if op["type"] == "index_accessor":
        head = dotted(left)
        if head is None:
            return None
        index = f"'{right}'" if isinstance(right, str) else str(right)
        return f"{head}[{index}]"
    return None


def decorator(entry: dict[str, Any], kind: str) -> Any:
    """The argument of decorator ``kind`` (pycep names: ``allowed``, ``description``, ``secure``, ``min_value``,
    ...) on a parameter / output entry; ``True`` for argument-less decorators; ``None`` when absent."""
    for dec in entry.get("decorators", []):
        if dec["type"] == kind:
            return dec.get("argument", True)
    return None


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar inside ``node``, depth first (``node`` included)."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def one_resource(doc: dict[str, Any], type_: str, **match: Any) -> Resource:
    """The one resource of ``doc`` of ``type_`` (not ``existing``) whose body has every ``match`` member; fails the
    test (``AssertionError``) when there are none or several."""
    found = [r for r in resources(doc, type_)
             if not r.existing and all(r.body.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected exactly one {type_} {match or ''}, found {[r.symbol for r in found]}"
    return found[0]


def auth_properties() -> dict[str, Any]:
    """The ``properties`` of the function app's App Service authentication (``authsettingsV2``)."""
    return one_resource(load("app/functionapp.bicep"), "Microsoft.Web/sites/config",
                        name="authsettingsV2").body["properties"]


def excluded_by(path: str, entries: list[str]) -> bool:
    """Whether App Service authentication's ``excludedPaths`` ``entries`` exclude ``path``: an entry is one path,
    or with a trailing ``/*`` everything below it (MicrosoftDocs/azure-docs#86514)."""
    for entry in entries:
        if entry.endswith("/*"):
            if path.startswith(entry[:-1]):
                return True
        elif path == entry:
            return True
    return False
