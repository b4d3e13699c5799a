"""`cozemq bench`: OpenMessaging-style workloads, run through cozemq and, side by side in the same
run, through the broker's raw Python client and FastStream where it supports the broker."""

from .drivers import CozemqDriver, Driver, drivers_for
from .runner import Result, run_workload
from .workload import Workload, load_workload, workload_names

__all__ = [
    "CozemqDriver",
    "Driver",
    "Result",
    "Workload",
    "drivers_for",
    "load_workload",
    "run_workload",
    "workload_names",
]
