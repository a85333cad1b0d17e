"""One copy of each equal string a run reads from two places (issue 12, bounded memory).

A matched Protime person holds the same employee number, badge number and e-mail as its HR
employee, and a linked one holds the HR id as its reference value. Read apart, each is a second
``str`` of the same text: some 180 bytes a person, 45 MB at 250,000 people, alive through planning.
The HR read and the Protime read (or the snapshot load) of one run share a :class:`StringPool`
while they create their objects, so a duplicate is freed as soon as it is made and its memory
reused by the next string. Giving the objects the shared strings once both reads are over saves
nothing: the freed strings leave the allocator's pools part-empty, and what comes later (other
sizes) does not fill them.

The pool is the run's for its reads only: dropped (:meth:`StringPool.clear`) before planning,
where it would be up to four entries a person of dead weight. Equal strings are interchangeable,
so whether a value was shared never changes a result; ``dict.setdefault`` is atomic, so the HR
read on its worker thread and the Protime read on the event loop may use the pool at once.
"""

from __future__ import annotations

from typing import overload

__all__ = ["StringPool"]


class StringPool:
    """Hands out the first ``str`` object seen of each text (see the module doc)."""

    __slots__ = ("_strings",)

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}

    @overload
    def share(self, value: str) -> str: ...
    @overload
    def share(self, value: None) -> None: ...
    @overload
    def share(self, value: str | None) -> str | None: ...
    def share(self, value: str | None) -> str | None:
        """The pool's object equal to ``value`` (``value`` itself when it is the first)."""
        if value is None:
            return None
        return self._strings.setdefault(value, value)

    def __len__(self) -> int:
        return len(self._strings)

    def clear(self) -> None:
        """Forget every string (the objects that hold them keep them)."""
        self._strings = {}
