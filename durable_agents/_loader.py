"""Importing the app's ``agents/`` folder without shadowing the OpenAI Agents SDK (internal).

The app keeps its agent definitions in a top-level folder named ``agents/`` (the project layout), but ``agents``
is also the import name of the OpenAI Agents SDK (``pip install openai-agents``). The folder therefore has no
``__init__.py``: a directory without one is only a namespace-package *candidate*, so ``import agents`` still finds
the SDK's regular package (PEP 420, "regular packages take precedence"). This module imports the folder under
another name, ``app_agents``, so ``function_app.py`` and the tests can reach the definitions
(internal; public as ``durable_agents.load_app_agents``).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["APP_AGENTS_PACKAGE", "load_app_agents"]

APP_AGENTS_PACKAGE = "app_agents"


def load_app_agents(*modules: str, app_dir: str | Path | None = None) -> ModuleType:
    """Import ``<app_dir>/agents`` as the package ``app_agents`` and then its submodules ``modules``.

    Args:
        modules: submodule names to import, e.g. ``"support"`` for ``agents/support.py``.
        app_dir: the folder that holds ``function_app.py`` and ``agents/``; default: the folder of the calling
            module (``function_app.py``), or the current directory when the caller has no file.

    Returns:
        The ``app_agents`` package; each imported submodule is an attribute of it (``app_agents.support``).

    Raises:
        FileNotFoundError: the folder does not exist.
        ImportError: the ``agents`` folder has an ``__init__.py`` (it would shadow the SDK), or a submodule fails.
    """
    if app_dir is None:
        caller = sys._getframe(1).f_globals.get("__file__")
        root = Path(caller).resolve().parent if caller else Path.cwd()
    else:
        root = Path(app_dir)
    folder = (root / "agents").resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"agent folder not found: {folder}")
    if (folder / "__init__.py").exists():
        raise ImportError(
            f"{folder}/__init__.py must not exist: it would shadow the OpenAI Agents SDK package 'agents'"
        )
    package = sys.modules.get(APP_AGENTS_PACKAGE)
    if package is None or list(getattr(package, "__path__", [])) != [str(folder)]:
        spec = importlib.machinery.ModuleSpec(APP_AGENTS_PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        package = importlib.util.module_from_spec(spec)
        sys.modules[APP_AGENTS_PACKAGE] = package
    for name in modules:
        setattr(package, name, importlib.import_module(f"{APP_AGENTS_PACKAGE}.{name}"))
    return package
