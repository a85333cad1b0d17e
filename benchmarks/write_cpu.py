"""idsync's CPU per reference write, at zero latency, and where it goes (issue 12).

    .venv/bin/python benchmarks/write_cpu.py [--writes 10000] [--concurrency 8] [--profile FILE]

``idsync simulator`` runs as its own process (no latency, no rate limit) so that its CPU does not
count. This process makes one :class:`sync.protime.ProtimeClient` with the settings a run uses
(rate limit off: pacing is not what is measured) and writes ``--writes`` references with
``--concurrency`` workers, as the apply step does. Printed: the CPU time of this process over the
writes divided by the writes (``time.process_time``: every thread, user + system), the wall time,
and the simulator's CPU per write for comparison. ``--profile FILE`` writes a pyinstrument text
profile of the writes. The apply step's recording of outcomes is not in this figure: the reconcile
benchmark's whole-process CPU gives that (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sync.config import ProtimeSettings
from sync.logging import configure_logging
from sync.protime import ProtimeClient

IDSYNC = str(Path(sys.executable).parent / "idsync")
API = "/connector/protimeapi/api/v1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _start_simulator(people: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [IDSYNC, "simulator", "--port", "0", "--people", str(people), "--seed", "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "API base URL" in line:
            return proc, line.split(":", 1)[1].strip().removesuffix(API)
    raise RuntimeError("the simulator did not start")


async def _writes(client: ProtimeClient, ids: list[int], concurrency: int) -> None:
    queue = iter(ids)

    async def worker() -> None:
        for pid in queue:
            await client.put_reference(value=f"H{pid}", protime_id=pid)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(base_url: str, *, writes: int, concurrency: int, sim_pid: int) -> None:
    settings = ProtimeSettings(
        base_url=base_url,
        tenant="acme",
        token_url=f"{base_url}/tenants/acme/connect/token",
        client_id="demo-client",
        client_secret="demo-secret",  # noqa: S106 - the simulator's published demo credential
        user_agent_company="write_cpu benchmark",
        concurrency=concurrency,
        rate_limit_per_second=0,
    )
    async with httpx.AsyncClient(base_url=base_url) as admin:
        people = (await admin.get("/_sim/people")).json()["people"]
    ids = [int(p["id"]) for p in people][:writes]
    async with ProtimeClient(settings, read_email=False) as client:
        await client.check_token()
        await _writes(client, ids[: min(200, len(ids))], concurrency)  # warm up: lanes, imports
        ids = ids[min(200, len(ids)) :]
        sim_before = _cpu_of(sim_pid)
        cpu, wall = time.process_time(), time.perf_counter()
        await _writes(client, ids, concurrency)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        sim_cpu = _cpu_of(sim_pid) - sim_before
    print(
        f"{len(ids)} writes, concurrency {concurrency}: {1000 * cpu / len(ids):.3f} ms idsync CPU"
        f" per write, {len(ids) / wall:.0f} writes/s; simulator {1000 * sim_cpu / len(ids):.3f}"
        f" ms CPU per write; load {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", type=Path, help="a pyinstrument text profile of the writes")
    args = parser.parse_args()
    configure_logging(level="INFO", fmt="json")  # as a run: debug events dropped, INFO kept
    sim, base_url = _start_simulator(args.writes + 200)
    try:
        run = measure(
            base_url, writes=args.writes + 200, concurrency=args.concurrency, sim_pid=sim.pid
        )
        if args.profile is None:
            asyncio.run(run)
        else:
            from pyinstrument import Profiler

            with Profiler(async_mode="enabled") as profiler:
                asyncio.run(run)
            args.profile.write_text(profiler.output_text(unicode=True, color=False))
            print(f"profile: {args.profile}")
    finally:
        sim.terminate()
        sim.wait(timeout=15)


if __name__ == "__main__":
    main()
