"""The Azure Functions app (Python v2 programming model): wires the blueprints, holds no logic.

- ``activities``: the support agent's tools, each an activity function;
- ``durable_agents.models``: the ``invoke_model`` activity (every model call of every run);
- ``agents/`` (imported as ``app_agents``, see ``durable_agents.loader``): agents and their orchestrators;
- ``durable_agents.http_api``: the HTTP API (``/api/agents``, ``/api/runs``...).
"""

import azure.durable_functions as df
import azure.functions as func

from activities import bp as activities_bp
from durable_agents.http_api import bp as http_api_bp
from durable_agents.loader import load_app_agents
from durable_agents.models import model_blueprint

app_agents = load_app_agents("support")

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(activities_bp)
app.register_functions(model_blueprint)
app.register_functions(app_agents.support.bp)
app.register_functions(http_api_bp)
