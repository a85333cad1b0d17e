"""How long `idsync simulator --tenants-file` takes to start with many tenants, and how much memory
it holds then and after every tenant's people were read once (docs/simulator.md, "Performance").

    .venv/bin/python tests/simulator/tenants_scale.py --tenants 200 --people 2000

Not a test (pytest collects test_*.py only): it starts the command as idsync's benchmark of
issue 21 does, so the figures are the ones that benchmark pays before its first sync.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

_API = "/connector/protimeapi/api/v1"
_REFS = "(people,@badge-number)(people,@employee-number)(people,HRMID)"


def _tenants_file(folder: Path, tenants: int, people: int) -> Path:
    path = folder / "tenants.toml"
    tables = "".join(
        f'\n[tenants.t{i:03d}]\nseed = {i}\nclient_id = "c{i:03d}"\nclient_secret = "s{i:03d}"\n'
        for i in range(tenants)
    )
    path.write_text(f"[defaults]\npeople = {people}\n{tables}", encoding="utf-8")
    return path


def _memory(pid: int) -> str:
    """VmRSS and VmHWM (peak) of ``pid`` in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return f"RSS {values['VmRSS']:.0f} MiB (peak {values['VmHWM']:.0f} MiB)"


def _cpu(pid: int) -> float:
    """CPU seconds ``pid`` has used: the figure a busy shared machine changes least."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _read_all(root: str, tenants: int, connections: int) -> int:
    """Every person of every tenant, with references, page by page (8 tenants at a time)."""
    total = 0
    limit = asyncio.Semaphore(connections)
    async with httpx.AsyncClient(headers={"User-Agent": "tenants-scale/1"}, timeout=120) as http:

        async def one(i: int) -> None:
            nonlocal total
            name = f"t{i:03d}"
            form = {
                "grant_type": "client_credentials",
                "client_id": f"c{i:03d}",
                "client_secret": f"s{i:03d}",
            }
            async with limit:
                answer = await http.post(f"{root}/t/{name}/tenants/{name}/connect/token", data=form)
                auth = {"Authorization": f"Bearer {answer.json()['access_token']}"}
                url: str | None = f"{root}/t/{name}{_API}/people?externalReferences={_REFS}"
                while url is not None:
                    page = (await http.get(url, headers=auth)).json()
                    total += len(page["value"])
                    url = root + page["nextLink"] if "nextLink" in page else None

        await asyncio.gather(*(one(i) for i in range(tenants)))
    return total


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = _tenants_file(Path(folder), args.tenants, args.people)
        command = [sys.executable, "-m", "sync", "simulator", "--port", "0"]
        started = time.perf_counter()
        process = subprocess.Popen(
            [*command, "--tenants-file", str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline()]
            while not lines[-1].startswith("Press Ctrl+C"):
                lines.append(process.stdout.readline())
            ready = time.perf_counter() - started
            _say(lines[0].strip())
            cpu = _cpu(process.pid)
            _say(f"serving after {ready:.1f} s, {cpu:.1f} s of CPU; {_memory(process.pid)}")
            found = re.search(r"http://[^/\s]+", lines[3])
            assert found is not None, lines[:4]
            began = time.perf_counter()
            total = asyncio.run(_read_all(found.group(0), args.tenants, args.connections))
            _say(
                f"read {total} people of {args.tenants} tenants in"
                f" {time.perf_counter() - began:.1f} s ({_cpu(process.pid) - cpu:.1f} s of server"
                f" CPU); {_memory(process.pid)}"
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    _say(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
