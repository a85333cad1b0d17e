"""The HR source: one read of the configured table or query, with every row validated.

``read_hr`` returns the :class:`~sync.domain.HRSnapshot` the planner works from; ``write_back``
stores Protime ids in the HR database when that is configured. The validation rules (what makes an
id invalid, which active values mean "out of scope") are documented in :mod:`sync.hr._validate`.
"""

from sync.hr._details import read_hr_details
from sync.hr._probe import Check, preflight_hr, probe_hr
from sync.hr._source import read_hr
from sync.hr._validate import FALSE_SPELLINGS
from sync.hr._writeback import write_back

__all__ = [
    "FALSE_SPELLINGS",
    "Check",
    "preflight_hr",
    "probe_hr",
    "read_hr",
    "read_hr_details",
    "write_back",
]
