"""The survivor explanations of ``benchmarks/bench_mutation.py`` are keyed on each mutant's change, not on
mutmut's number (which mutmut reassigns whenever a function's code changes)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "mutation_survivors", Path(__file__).resolve().parents[1] / "benchmarks" / "mutation_survivors.py"
)
assert _SPEC is not None and _SPEC.loader is not None
survivors = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(survivors)

STEP = "-            step[pending] *= 0.5\n+            step[pending] = 0.5"


def test_keys_are_well_formed_and_no_mutant_has_two_explanations() -> None:
    seen: dict[tuple[str, str], str] = {}
    for func, keys, reason in survivors.BY_NAME:
        assert keys and reason
        for k in keys:
            assert re.fullmatch(r"[0-9a-f]{10}", k), (func, k)
            assert seen.setdefault((func, k), reason) == reason, (func, k)


def test_the_key_ignores_indentation_and_the_explanation_ignores_the_number() -> None:
    assert survivors.key(STEP) == survivors.key("-step[pending] *= 0.5\n+  step[pending] = 0.5")
    assert survivors.key(STEP) != survivors.key("-            step[pending] *= 0.5\n+            step[pending] *= 1.5")
    # A real explained change from the committed survivor record, that only its entry explains.
    func, diff, reason = next(
        (func, diff, reason)
        for func, keys, reason in survivors.BY_NAME
        for diff in _diffs_with(keys)
        if survivors.explain("policygradex.gradex.z.x_other__mutmut_1", diff) is None
    )
    for number in (1, 7, 12345):
        assert survivors.explain(f"policygradex.{func}__mutmut_{number}", diff) == reason


def _diffs_with(keys: list[str]):
    """Changes of mutants recorded in the committed survivor record whose key is one of ``keys``."""
    record = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "mutation_survivors.json"
    for entry in json.loads(record.read_text()).values():
        if survivors.key(entry["diff"]) in keys:
            yield entry["diff"]


def test_to_none_is_a_device_change_only_when_a_device_was_passed() -> None:
    device = "-    x = y.to(device)\n+    x = y.to(None)"
    dtype = "-    x = y.to(torch.float64)\n+    x = y.to(None)"
    assert survivors.explain("policygradex.gradex.z.x_f__mutmut_1", device) == survivors.DEVICE
    assert survivors.explain("policygradex.gradex.z.x_f__mutmut_1", dtype) is None
