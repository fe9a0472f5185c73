"""The mutation check: mutate the contract, the metrics collector, the settings parser and the search algorithms
(envelopenet, nas-random, proxylessnas and REINFORCE's replay), and see the tests fail.

Each mutant (tools/mutants.py) runs the module's tests (tools/mutation.toml) in a forked child of this process:
the child puts an import hook in front of the installed package, so `katib_nas.<module>` is compiled from the
mutated syntax tree while every file stays as it is (an interrupted run leaves nothing behind). One mutant at
a time, at low priority. Results go to build/mutation/results.jsonl as they come: a second run resumes, skipping
mutants already killed for the same module source, and survivors again while the tests are unchanged.

    .venv/bin/python tools/mutation.py                          # all targets, resumed
    .venv/bin/python tools/mutation.py --module contract/codec.py --fresh
    .venv/bin/python tools/mutation.py --report                 # the report of the results so far
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import signal
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from types import CodeType, ModuleType

from mutants import Mutant, list_mutants, mutated_tree

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "tools" / "mutation.toml"
RESULTS = REPO / "build" / "mutation" / "results.jsonl"
REPORT = REPO / "build" / "mutation" / "report.md"
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=ci", "-m", "not install"]
#: A mutant whose tests run longer than this multiple of the unmutated run (plus a margin) is stopped and counted
#: as detected: it made the code hang.
TIMEOUT_FACTOR, TIMEOUT_MARGIN = 5.0, 30.0
DETECTED = ("killed", "timeout")
#: Imported once before the first fork, so that no child pays for them (never the project's own modules).
WARM_UP = ("pytest", "hypothesis", "hypothesis.strategies", "yaml", "numpy")


@dataclass(frozen=True)
class Target:
    """A module to mutate and the tests that must notice."""

    module: str
    tests: tuple[str, ...]

    @property
    def import_name(self) -> str:
        return "katib_nas." + self.module.removesuffix(".py").replace("/", ".")

    def source(self) -> str:
        return (REPO / self.module).read_text()

    def source_sha(self) -> str:
        return hashlib.sha256(self.source().encode()).hexdigest()[:16]

    def tests_sha(self) -> str:
        digest = hashlib.sha256()
        for test in self.tests + ("tests/conftest.py",):
            digest.update((REPO / test).read_bytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Result:
    """The outcome of one mutant: killed, timeout (both detected) or survived."""

    module: str
    source_sha: str
    tests_sha: str
    key: str
    line: int
    change: str
    status: str
    seconds: float


class _MutantLoader(importlib.abc.Loader):
    def __init__(self, code: CodeType) -> None:
        self.code = code

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(self.code, module.__dict__)


class _MutantFinder(importlib.abc.MetaPathFinder):
    """Finds one module as the installed package would, and loads it from the mutated code."""

    def __init__(self, name: str, code: CodeType) -> None:
        self.name, self.code = name, code

    def find_spec(self, name: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != self.name:
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    spec.loader = _MutantLoader(self.code)
                    spec.cached = None
                    return spec
        return None


def load_targets(config: Path) -> tuple[list[Target], dict[str, str]]:
    """Targets in order, and equivalent mutants: "module::key" -> why."""
    data = tomllib.loads(config.read_text())
    targets = [Target(t["module"], tuple(t["tests"])) for t in data["target"]]
    equivalent = {f"{e['module']}::{e['key']}": e["why"] for e in data.get("equivalent", [])}
    return targets, equivalent


def run_tests(tests: tuple[str, ...], log: Path, hook: _MutantFinder | None, timeout: float) -> tuple[int, float]:
    """Run pytest on `tests` in a forked child with the hook installed; (exit status, seconds), status -1 on
    timeout."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(tests, log, hook)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), time.monotonic() - start
        if time.monotonic() - start > timeout:
            _stop_group(pid)
            return -1, time.monotonic() - start
        time.sleep(0.02)


def _child(tests: tuple[str, ...], log: Path, hook: _MutantFinder | None) -> None:
    """The forked child: own process group (so a timeout stops whatever it started), output to the log."""
    code = 3
    try:
        os.setpgid(0, 0)
        handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, 1)
        os.dup2(handle, 2)
        if hook is not None:
            sys.meta_path.insert(0, hook)
        import pytest

        os.chdir(REPO)
        code = int(pytest.main(PYTEST_ARGS + list(tests)))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _stop_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def read_results(path: Path) -> dict[tuple[str, str], Result]:
    """The latest result of each (module, key)."""
    results: dict[tuple[str, str], Result] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                result = Result(**json.loads(line))
                results[(result.module, result.key)] = result
    return results


def still_valid(result: Result | None, source_sha: str, tests_sha: str) -> bool:
    """A result counts while the module is unchanged; a survivor only while its tests are unchanged too."""
    if result is None or result.source_sha != source_sha:
        return False
    return result.status in DETECTED or result.tests_sha == tests_sha


def status_of(code: int) -> str:
    """pytest's exit status 0 means every test passed with the mutant in: it survived."""
    if code == -1:
        return "timeout"
    return "survived" if code == 0 else "killed"


def check_target(target: Target, known: dict[tuple[str, str], Result], out: Path) -> None:
    """Run every pending mutant of one target, appending each result to `out`."""
    source, source_sha, tests_sha = target.source(), target.source_sha(), target.tests_sha()
    mutants = list_mutants(source)
    pending = [m for m in mutants if not still_valid(known.get((target.module, m.key)), source_sha, tests_sha)]
    print(f"{target.module}: {len(mutants)} mutants, {len(pending)} to run", flush=True)
    if not pending:
        return
    log = out.parent / "last-test-output.txt"
    code, seconds = run_tests(target.tests, log, None, timeout=3600.0)
    if code != 0:
        sys.exit(f"mutation: the tests of {target.module} fail without any mutant (exit {code}); see {log}")
    timeout = seconds * TIMEOUT_FACTOR + TIMEOUT_MARGIN
    for number, mutant in enumerate(pending, 1):
        result = _run_mutant(target, mutant, source, log, timeout, (source_sha, tests_sha))
        with out.open("a") as handle:
            handle.write(json.dumps(asdict(result)) + "\n")
        if result.status == "survived":
            print(f"  [{number}/{len(pending)}] survived line {mutant.line}: {mutant.key}", flush=True)


def _run_mutant(target: Target, mutant: Mutant, source: str, log: Path, timeout: float,
                shas: tuple[str, str]) -> Result:
    code_object = compile(mutated_tree(source, mutant), str(REPO / target.module), "exec")
    code, seconds = run_tests(target.tests, log, _MutantFinder(target.import_name, code_object), timeout)
    change = f"{mutant.original} ({mutant.replacement})"
    return Result(target.module, shas[0], shas[1], mutant.key, mutant.line, change, status_of(code),
                  round(seconds, 2))


def report(targets: list[Target], equivalent: dict[str, str], results: dict[tuple[str, str], Result]) -> str:
    """Markdown: the score of each module, then every survivor that is not listed as equivalent."""
    rows, survivors, missing = [], [], []
    for target in targets:
        source_sha = target.source_sha()
        mutants = list_mutants(target.source())
        done = [results.get((target.module, m.key)) for m in mutants]
        done = [r for r in done if r is not None and r.source_sha == source_sha]
        same = [r for r in done if f"{target.module}::{r.key}" in equivalent]
        detected = sum(r.status in DETECTED for r in done)
        lived = [r for r in done if r.status == "survived" and r not in same]
        scored = len(done) - len(same)
        score = f"{100.0 * detected / scored:.1f}%" if scored else "-"
        rows.append(f"| {target.module} | {len(mutants)} | {len(done)} | {detected} | {len(same)} | {len(lived)} "
                    f"| {score} |")
        survivors += [f"- {r.module}:{r.line} `{r.change}` — `{r.key}`" for r in lived]
        keys = {m.key for m in mutants}
        missing += [k for k in equivalent if k.startswith(target.module + "::") and k.split("::", 1)[1] not in keys]
    lines = ["| module | mutants | run | detected | equivalent | survived | score |", "|---|---|---|---|---|---|---|"]
    lines += rows + ["", f"Survivors ({len(survivors)}):"] + (survivors or ["- none"])
    if missing:
        lines += ["", "Equivalent entries that match no mutant any more (update tools/mutation.toml):"]
        lines += [f"- {key}" for key in missing]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="only this target (repeatable), e.g. contract/codec.py")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results of the selected targets")
    parser.add_argument("--report", action="store_true", help="only print the report of the results so far")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    targets, equivalent = load_targets(args.config)
    unknown = set(args.module or ()) - {t.module for t in targets}
    if unknown:
        parser.error(f"--module {sorted(unknown)[0]} is not a target of {args.config}")
    selected = [t for t in targets if not args.module or t.module in args.module]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if not args.report:
        _run(selected, args.results, args.fresh)
    text = report(selected, equivalent, read_results(args.results))
    (args.results.parent / REPORT.name).write_text(text)
    print(text, end="")
    return 0


def _run(targets: list[Target], results: Path, fresh: bool) -> None:
    os.nice(10)
    for name in WARM_UP:
        importlib.import_module(name)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    known = {} if fresh else read_results(results)
    for target in targets:
        check_target(target, known, results)


if __name__ == "__main__":
    sys.exit(main())
