"""Which process runs a run: recorded when the run starts, so a run whose process is gone shows as interrupted."""

from __future__ import annotations

import os
import socket
from typing import Any


def owner() -> dict[str, Any]:
    """This process, as stored with a run while it is running."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def live_status(status: str, summary: dict[str, Any]) -> str:
    """`running` as stored, unless its process on this host is gone (killed, crashed): then `interrupted`."""
    if status != "running" or summary.get("host") != socket.gethostname() or not isinstance(summary.get("pid"), int):
        return status
    return status if _alive(summary["pid"]) else "interrupted"
