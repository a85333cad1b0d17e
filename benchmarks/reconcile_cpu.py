"""CPU time of the pure core (classify + plan) on large synthetic worlds.

    .venv/bin/python benchmarks/reconcile_cpu.py [--size 100000] [--repeat 3]

Scenarios, each with N HR employees and N Protime persons matched one to one by employee
number: ``linked`` (every person already holds its employee's id: the steady state, nothing to
do), ``unlinked`` (no person holds a value yet: N writes) and ``swapped`` (persons hold their
ids pairwise swapped: N/2 swaps, each a delete and two writes, the worst case). Prints the best
of ``--repeat`` CPU times (time.process_time) per scenario, after a calibration figure.
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


def measure(size: int, scenario: str, repeat: int) -> tuple[float, float, int]:
    """Best CPU seconds of classify and of plan over ``repeat`` runs, and the action count."""
    hr, people = world(size, scenario)
    rules = RULES if scenario != "swapped" else (Rule.EMPLOYEE_NUMBER,)
    best_classify = best_plan = float("inf")
    actions = 0
    for _ in range(repeat):
        start = time.process_time()
        found = classify(hr=hr, people=people, prior=PriorState(), rules=rules)
        middle = time.process_time()
        result = plan(classifications=found, reactions=ReactionSettings(), prior=PriorState())
        end = time.process_time()
        best_classify = min(best_classify, middle - start)
        best_plan = min(best_plan, end - middle)
        actions = len(result.actions)
        del found, result
    return best_classify, best_plan, actions


def calibration() -> float:
    """CPU seconds for 100,000 dict inserts: to compare figures taken on different machines."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        table = {}
        for i in range(100_000):
            table[i] = str(i)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"calibration: 100,000 dict inserts in {calibration() * 1000:.1f} ms CPU")
    for scenario in ("linked", "unlinked", "swapped"):
        classified, planned, actions = measure(args.size, scenario, args.repeat)
        print(
            f"{scenario:9} {args.size} employees/persons: {classified + planned:.3f} s CPU"
            f" (classify {classified:.3f} + plan {planned:.3f}), {actions} actions"
        )


if __name__ == "__main__":
    main()
