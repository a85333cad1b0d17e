"""CPU time of the pure core (classify + plan) on large synthetic worlds.

    .venv/bin/python benchmarks/reconcile_cpu.py [--size 100000] [--repeat 3]

Scenarios, each with N HR employees and N Protime persons matched one to one by employee
number: every person already linked; no person linked yet (N writes); every person holding
the id of the next employee (N moves in one long chain... broken into cycles of two, to stay
realistic). Prints the best of ``--repeat`` CPU times (time.process_time) per scenario.
"""

from __future__ import annotations

import argparse
import time

from sync.config import ReactionSettings
from sync.domain import HREmployee, HRSnapshot, Person, PriorState, Rule
from sync.reconcile._classify import classify
from sync.reconcile._plan import plan

RULES = (Rule.REFERENCE, Rule.EMPLOYEE_NUMBER, Rule.BADGE_NUMBER)


def world(size: int, scenario: str) -> tuple[HRSnapshot, list[Person]]:
    employees = tuple(
        HREmployee(hr_id=f"H{i:06d}", employee_number=f"E{i}", badge_number=f"B{i}")
        for i in range(size)
    )
    if scenario == "linked":
        refs = [f"H{i:06d}" for i in range(size)]
    elif scenario == "unlinked":
        refs = [None] * size
    else:  # swapped pairs: person 2k holds H(2k+1) and vice versa
        refs = [f"H{i ^ 1:06d}" for i in range(size)]
    people = [
        Person(id=10_000_000 + i, employee_number=f"E{i}", badge_number=f"B{i}", reference=refs[i])
        for i in range(size)
    ]
    return HRSnapshot(employees=employees), people


def measure(size: int, scenario: str, repeat: int) -> tuple[float, int]:
    hr, people = world(size, scenario)
    rules = RULES if scenario != "swapped" else (Rule.EMPLOYEE_NUMBER,)
    best = float("inf")
    actions = 0
    for _ in range(repeat):
        start = time.process_time()
        found = classify(hr=hr, people=people, prior=PriorState(), rules=rules)
        result = plan(classifications=found, reactions=ReactionSettings(), prior=PriorState())
        best = min(best, time.process_time() - start)
        actions = len(result.actions)
    return best, actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for scenario in ("linked", "unlinked", "swapped"):
        seconds, actions = measure(args.size, scenario, args.repeat)
        print(f"{scenario:9} {args.size} employees/persons: {seconds:.3f} s CPU, {actions} actions")


if __name__ == "__main__":
    main()
