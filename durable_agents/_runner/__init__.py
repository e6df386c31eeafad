"""The durable runner (internal, not part of the public API): ``Runner.run_sync`` inside a Durable orchestration.

The public face is :mod:`durable_agents._orchestrator` (``agent_orchestrator``, ``install``). The modules, in the
order a call flows through them (docs/internals.md "Runner internals" has a sequence diagram):

* :mod:`.seam` - the SDK seam: ``DurableAgentRunner``, ``DurableModel`` (model calls → ``invoke_model``);
* :mod:`.steps` - the typed vocabulary: calls, steps, outcomes and the messages between the two threads;
* :mod:`.bridge` - the worker thread running the user's function, batching its calls into steps;
* :mod:`.episode` - the orchestrator generator: cached resume or fresh replay, steps → Durable tasks;
* :mod:`.cache` - live sessions kept between episodes (LRU per process);
* :mod:`.compat` - every use of ``azure-functions-durable`` 1.x internals.
"""

from .bridge import live_worker_count
from .cache import clear_session_cache, set_session_cache_size
from .compat import install_long_timer_cancel, install_timestamp_memo
from .episode import drive
from .seam import DurableAgentRunner, DurableModel, DurableModelProvider, compact_history
from .steps import REPLAYED_INPUT_MARKER

__all__ = [
    "REPLAYED_INPUT_MARKER",
    "DurableAgentRunner",
    "DurableModel",
    "DurableModelProvider",
    "clear_session_cache",
    "compact_history",
    "drive",
    "install_long_timer_cancel",
    "install_timestamp_memo",
    "live_worker_count",
    "set_session_cache_size",
]
