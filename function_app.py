"""The function app: the store's agents and workflows (agents/), their tools, the model activity and the HTTP API."""

import durable_agents
from activities import bp as tools

app = durable_agents.App()
app.register_functions(tools)
app.register_agent_modules()  # every agents/*.py that defines a blueprint `bp`
