"""Records of the search benchmark's results file (bench/bench_search.py), at its budgets."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from typing import Any

from ..conftest import REPO


@functools.cache
def budget(quick: bool) -> dict[str, Any]:
    """bench_search's budget (standard or --quick) as its records carry it."""
    code = f"import dataclasses, json, bench_search; print(json.dumps(dataclasses.asdict(bench_search.Budget.of({quick}))))"
    return json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO / "bench", check=True,
                                     capture_output=True, text=True).stdout)


def record(method: str, seed: int, test_points: float, **extra: Any) -> dict[str, Any]:
    final = {"Test-Accuracy": test_points / 100, "Validation-Accuracy": test_points / 100, "params": 1e5,
             "macs": 1e7}
    return {"method": method, "seed": seed, "constrained": False, "target_ms": None, "trials": [],
            "final": final, "final_architecture": f"{method}-{seed}", "search_cpu_s": 1500.0, "final_cpu_s": 100.0,
            "search": {}, "note": "", "retrains": [], "budget": budget(False), **extra}
