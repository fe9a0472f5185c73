"""`katib-nas profile` and `katib-nas proxyless-search` as real subprocesses, and the latency table rules."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from katib_nas.contract.codec import decode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.supernet import choices_of
from katib_nas.trial_image.proxyless.table import LatencyTable, load_table, network_keys, supernet_keys

from .conftest import REPO, oneshot_digits_experiment

SUPERNET = "in8x8x1-cls10-stem8/w8:mb3e3_mb5e6_c3_zero@r:mb3e3_mb5e6_c3_zero@r/w16s2:mb3e3_mb5e6_c3_zero@r"
EXAMPLE = REPO / "examples" / "proxylessnas-oneshot-fashion-mnist.yaml"


def katib_nas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "katib_nas.cli", *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("profile")
    done = katib_nas("profile", str(oneshot_digits_experiment(folder / "experiment.yaml")), "--out",
                     str(folder / "table.json"), "--repeats", "5", "--warmup", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    return folder / "table.json"


def test_profile_measures_every_position_the_supernet_needs(profiled: Path) -> None:
    table = load_table(profiled)
    assert sorted(table.entries) == sorted(set(supernet_keys(decode(SUPERNET))))
    assert all(ms >= 0 for ms in table.entries.values())
    # Everything but the identity widener (no width change, stride 1) does real work.
    assert all(ms > 0 for key, ms in table.entries.items() if key != "widen:8x8:8-8:s1")
    assert table.meta["statistic"] == "min" and table.meta["hook_overhead_ms"] > 0
    assert "block:mb5e6@r:4x4:16-16:s1" in table.entries and "widen:8x8:8-16:s2" in table.entries
    assert (table.device, table.batch_size, table.threads) == ("cpu", 1, 1)


def test_search_reports_the_derived_network_and_its_latencies(profiled: Path) -> None:
    table = load_table(profiled)
    target = table.predict_ms(decode(SUPERNET.replace("mb3e3_mb5e6_c3_zero", "mb5e6"))) * 0.6
    done = katib_nas("proxyless-search", f"--architecture={SUPERNET}",
                     f"--search=epochs-2_warmup-1_loss-mullog_target-{target:.4f}_archlr-0.05",
                     f"--latency-table={profiled}", "--dataset=digits", "--batch-size=64", "--threads=1",
                     "--arch-every=2", "--rank-paths=4")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split(" ", 1)[-1] for line in done.stdout.splitlines()]  # after each line's timestamp
    collected = dict(m.groups() for m in map(re.compile(r"(Best-Architecture)=([\w./:+@-]+)").fullmatch, lines) if m)
    numbers = dict(m.groups() for line in lines
                   for m in [re.fullmatch(r"([\w-]+)=([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)", line)] if m)
    derived = decode(collected["Best-Architecture"])
    assert len(choices_of(decode(SUPERNET), derived)) == 3
    assert 0.1 < float(numbers["Validation-Accuracy"]) <= 1.0
    assert float(numbers["predicted-latency-ms"]) == pytest.approx(table.predict_ms(derived), rel=1e-4)
    assert float(numbers["latency-ms"]) > 0
    # How decided the search was, and the derived network's rank among 4 uniform paths on the same weights.
    assert int(numbers["arch-steps"]) > 0
    assert 0.25 <= float(numbers["path-max-probability"]) <= 1.0
    assert 0.0 <= float(numbers["path-entropy"]) <= math.log(4) + 1e-6
    assert numbers["ranked-paths"] == "5" and 1 <= int(numbers["derived-rank"]) <= 5
    assert "derived paths: validation accuracy" in done.stderr and "p_max" in done.stderr


def test_a_table_missing_entries_is_refused_with_the_keys(profiled: Path, tmp_path: Path) -> None:
    data = json.loads(profiled.read_text())
    del data["entries"]["block:c3@r:4x4:16-16:s1"]
    del data["entries"]["head:4x4:16-10"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    done = katib_nas("proxyless-search", f"--architecture={SUPERNET}", "--search=epochs-2_warmup-1_target-1",
                     f"--latency-table={broken}", "--dataset=digits")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "lacks 2 entries" in done.stderr
    assert "block:c3@r:4x4:16-16:s1" in done.stderr and "head:4x4:16-10" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--search=epochs-2_warmup-1_target-1"], "--latency-table"),
    (["--search=epochs-2_warmup-3"], "warmup"),
    (["--search=epochs-2", "--architecture=in8x8x1-cls10-stem8/w8:c3"], "no searchable block"),
])
def test_bad_search_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    has_arch = any(a.startswith("--architecture") for a in args)
    done = katib_nas("proxyless-search", *([] if has_arch else [f"--architecture={SUPERNET}"]), *args,
                     "--dataset=digits")
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_profile_refuses_other_algorithms(tmp_path: Path) -> None:
    done = katib_nas("profile", str(REPO / "examples" / "nas-random-fashion-mnist.yaml"), "--out",
                     str(tmp_path / "t.json"))
    assert done.returncode == 2 and "proxylessnas" in done.stderr and done.stderr.count("\n") == 1


def test_table_predictor_sums_entries_and_names_missing_ones(tmp_path: Path) -> None:
    network = decode("in8x8x1-cls10-stem8/w8:mb3e3@r:zero@r/w16s2:c3@r")
    keys = network_keys(network)
    assert keys == ["stem:8x8:1-8", "widen:8x8:8-8:s1", "widen:8x8:8-16:s2", "head:4x4:16-10",
                    "block:mb3e3@r:8x8:8-8:s1", "block:zero@r:8x8:8-8:s1", "block:c3@r:4x4:16-16:s1"]
    table = LatencyTable({key: float(i + 1) for i, key in enumerate(keys)})
    assert table.predict_ms(network) == sum(range(1, 8))
    path = tmp_path / "t.json"
    table.save(path)
    assert load_table(path).entries == table.entries
    with pytest.raises(InvalidInput, match=r"lacks 1 entry the network needs: block:mb5e6@r:8x8:8-8:s1"):
        table.predict_ms(decode("in8x8x1-cls10-stem8/w8:mb5e6@r:zero@r/w16s2:c3@r"))
    for text, message in [("{", "not readable JSON"), ('{"format": "x", "entries": {}}', "is not a"),
                          (json.dumps({**table.to_json(), "entries": {"stem:8x8:1-8": -1}}), "milliseconds")]:
        path.write_text(text)
        with pytest.raises(InvalidInput, match=message):
            load_table(path)
    with pytest.raises(InvalidInput, match="not found"):
        load_table(tmp_path / "absent.json")


@pytest.mark.parametrize("make, message", [
    (lambda folder: folder, "is a folder, not a file"),
    (lambda folder: Path("/dev/null"), "is not a regular file"),
])
def test_profile_refuses_an_out_that_is_not_a_file_before_profiling(tmp_path: Path, make, message: str  # noqa: ANN001
                                                                    ) -> None:
    out = make(tmp_path)
    done = katib_nas("profile", str(oneshot_digits_experiment(tmp_path / "experiment.yaml")), "--out", str(out),
                     "--repeats", "1", "--warmup", "1")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"katib-nas profile: error: --out {out} {message}; give the latency table's file\n"
