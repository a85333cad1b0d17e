"""The long-running service: ``idsync serve``.

Scheduler (APScheduler decides the ticks, one runner thread runs), the health and metrics
listener, Prometheus metrics, graceful SIGTERM. Nothing outside the CLI imports this package.
"""

from sync.service._health import HealthServer
from sync.service._metrics import Metrics
from sync.service._scheduler import Scheduler, build_trigger
from sync.service._serve import Service, default_run_fn, serve
from sync.service._state import ServiceState, StateBackend, failing_streak

__all__ = [
    "HealthServer",
    "Metrics",
    "Scheduler",
    "Service",
    "ServiceState",
    "StateBackend",
    "build_trigger",
    "default_run_fn",
    "failing_streak",
    "serve",
]
