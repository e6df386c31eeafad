"""Durable OpenAI Agents SDK runs on Azure Durable Functions (the reusable agent runtime layer).

See docs/internals.md for the contracts between this package, the app's ``agents/`` and ``activities/``,
and the local runtime.
"""
