"""The CI slice of the fuzzer: a fixed set of mutated files of every layout, each opened
in a worker process under a time and memory limit; none may break the reader's promise.

The long run is ``python tests/fuzz/run.py --cases 10000`` (see README)."""

from __future__ import annotations

import pytest
from fuzz_harness import run_cases, write_cases
from fuzz_mutations import make_cases
from fuzz_seeds import build_seeds, companions

pytestmark = pytest.mark.torch

CASES = 1000
SEED = 2026


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    return {name: path.read_bytes() for name, path in build_seeds(folder).items()}


def test_the_cases_are_the_same_for_the_same_seed(seeds):
    first = list(make_cases(seeds, 120, SEED))
    assert first == list(make_cases(seeds, 120, SEED))
    assert first != list(make_cases(seeds, 120, SEED + 1))


def test_fuzz_slice_keeps_the_promise(tmp_path, seeds):
    cases = list(make_cases(seeds, CASES, SEED))
    # planted cases prove the harness blames a hang, a crash and an escape on their case
    # and carries on with the next one (the worker acts on these names only)
    planted = {"selftest-hang.pt": "hang", "selftest-crash.pt": "crash",
               "selftest-escape.pt": "open", "selftest-warning.pt": "warning escaped",
               "selftest-stderr.pt": "stderr"}  # fmt: skip
    for offset, name in enumerate(planted):
        cases.insert(100 + 180 * offset, (f"zz-{name}", b"x"))
    outcome = run_cases(write_cases(tmp_path, cases, companions()), case_timeout=10)
    found = {f.case.removeprefix("zz-"): f.what.split(":")[0] for f in outcome.findings}
    escaped = [f for f in outcome.findings if not f.case.startswith("zz-")]
    assert not escaped, "\n".join(map(str, escaped[:20]))
    assert found == planted
    assert outcome.loaded + outcome.refused == len(cases) - 2  # hang and crash: no result
    # not vacuous: many mutated files still load, most are refused
    assert outcome.loaded >= 50 and outcome.refused >= CASES // 2
