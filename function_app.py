"""The function app: the support agent, its tools, the model activity and the HTTP API (docs/internals.md)."""

import durable_agents
from activities import bp as tools

app = durable_agents.App()
app.register_functions(tools)
app.register_functions(durable_agents.load_app_agents("support").support.bp)
