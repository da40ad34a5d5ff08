"""Where a number came from: the commit, the machine, the peak memory of the work that made it.

Peak memory is measured per cell, not per process: Hydra's basic launcher runs every cell of a grid in one
process, so the process-wide `ru_maxrss` would carry the largest earlier cell into every later one. On Linux
the peak RSS (VmHWM) is reset by writing 5 to /proc/self/clear_refs; where that is impossible the process peak
is reported and says so. On CUDA the number is `torch.cuda.max_memory_allocated` after a reset.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from miva_lightning.config import REPO_ROOT


def git_commit(root: str | os.PathLike = REPO_ROOT) -> str:
    """`git rev-parse HEAD` of the checkout, or "unknown" (no git, not a repository)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """The machine a report was made on (no torch import: versions come from package metadata)."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": _version("torch"),
        "device": device,
    }
    if device.startswith("cuda"):
        import torch

        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return info


class PeakMemory:
    """Peak memory (MiB) of the work done between `start()` and `stop()`; `kind` says what was measured."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.kind = ""

    def start(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
            self.kind = "torch.cuda.max_memory_allocated"
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
            self.kind = "peak RSS of this cell (VmHWM reset at cell start)"
        except OSError:
            self.kind = "peak RSS of the process (could not be reset: includes earlier cells of this process)"
        return self

    def stop(self) -> float:
        if self.device.startswith("cuda"):
            import torch

            return round(torch.cuda.max_memory_allocated(torch.device(self.device)) / 2**20, 1)
        status = Path("/proc/self/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        from miva_lightning.utils import peak_rss_mb

        return round(peak_rss_mb(), 1)

