"""What every performance benchmark prints: a header naming the machine, the date and the
versions measured, and one verdict line per target (ratio, target, PASS or MISS)."""

from __future__ import annotations

import datetime
import os
import platform
from importlib.metadata import PackageNotFoundError, version


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(*packages: str) -> str:
    """`# date, host, CPUs and model, memory, Python and the packages' versions`."""
    found = []
    for name in packages:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"# {datetime.datetime.now().isoformat(timespec='minutes')} {platform.node()}: "
        f"{os.cpu_count()} CPUs ({cpu_model()}), {memory:.0f} GiB; "
        f"Python {platform.python_version()}, {', '.join(found)}"
    )


def verdict(name: str, value: float, target: str, passed: bool, unit: str = "x") -> bool:
    """Print `name  value  target ...  PASS|MISS`; return `passed`."""
    print(
        f"  {name:46s} {value:8.2f}{unit:2s} target {target:10s} {'PASS' if passed else 'MISS'}",
        flush=True,
    )
    return passed


def at_least(name: str, ratio: float, target: float) -> bool:
    return verdict(name, ratio, f">= {target}x", ratio >= target)


def at_most(name: str, ratio: float, target: float, unit: str = "x") -> bool:
    return verdict(name, ratio, f"<= {target}{unit}", ratio <= target, unit)
