"""A Protime Connector API simulator (the Connector API as documented plus the assumptions in docs/simulator.md) for the demo, the tests and benchmarks.

One implementation, two ways to reach it::

    sim = Simulator(SimulatorConfig(people=1000))
    async with httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url) as client: ...

    with serve_in_thread(sim) as base_url: ...          # real HTTP on a free loopback port

See docs/simulator.md for every behaviour and option.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync.simulator._exports import *  # noqa: F403 - the public names, for type checkers


def __getattr__(name: str) -> object:
    # The public names load on first use, not with the package: every `idsync` start reads the
    # fault settings' declaration in sync.simulator._config for the options of `idsync simulator`,
    # and must not pay for (nor, in the production image, lack) httpx, starlette and uvicorn.
    exports = importlib.import_module("sync.simulator._exports")
    if name in exports.__all__:
        return getattr(exports, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
