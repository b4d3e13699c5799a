"""The shared conformance suite and its helpers, importable by third-party backends.

Needs the ``testing`` extra: ``pip install "cozemq[testing]"``.
"""

from .harness import Harness, KitHarness, MemoryHarness
from .suite import ConformanceSuite, new_topic, until
from .tally import KeyOrderCheck, Report, Tally, parse, payload

__all__ = [
    "ConformanceSuite",
    "Harness",
    "KeyOrderCheck",
    "KitHarness",
    "MemoryHarness",
    "Report",
    "Tally",
    "new_topic",
    "parse",
    "payload",
    "until",
]
