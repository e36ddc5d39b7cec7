"""What every benchmark prints: the command line, the machine, the library versions, and a timer."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Callable


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    for module in ("tensorflow", "keras", "torch", "cv2", "tensorflow_datasets"):
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], "__version__", "?")
    return info


def header(title: str) -> None:
    print(f"# {title}")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"machine: {json.dumps(machine())}")


def throughput(fn: Callable[[], object], items_per_call: int, min_seconds: float = 3.0, warmup: int = 2) -> float:
    """Items per second of `fn`, after `warmup` calls, over at least `min_seconds` (best of 3 windows)."""
    for _ in range(warmup):
        fn()
    best = 0.0
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds / 3:
                break
        best = max(best, calls * items_per_call / elapsed)
    return best


def write_json(path: str, payload: dict) -> None:
    payload = dict(payload, machine=machine(), command=" ".join(sys.argv))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
