"""Differential test: prefork's parser (llhttp plus our checks) against h11, a pure-Python
parser independent of llhttp, over the whole corpus and over generated and mutated
requests. Every request both accept must come out the same (method, target, version,
fields, body); every disagreement must be one of the documented, reasoned differences in
docs/CONFORMANCE.md. For a longer bounded run by hand:

    DIFF_EXAMPLES=20000 python -m pytest tests/conformance/test_differential.py -s
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conformance.differential import compare, explain
from tests.corpus.test_corpus import INVALID, VALID
from tests.unit.test_parser_properties import mutations, requests

pytestmark = pytest.mark.timeout(300)
DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFORMANCE.md"
EXAMPLES = int(os.environ.get("DIFF_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 300,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEEN: Counter[str] = Counter()


def documented() -> set[str]:
    """The keys of the table "Where prefork and h11 differ" in docs/CONFORMANCE.md."""
    section = DOC.read_text().split("## Where prefork and h11 differ", 1)[1]
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.M))


def check(data: bytes) -> None:
    diff = compare(data)
    if diff is None:
        SEEN["agree"] += 1
        return
    key = explain(diff)
    assert key is not None, (f"unexplained difference ({diff.what}) for {data!r}:\n"
                             f"  prefork: {diff.ours}\n  h11: {diff.theirs}")
    assert key in documented(), f"{key} is not in docs/CONFORMANCE.md"
    SEEN[key] += 1


@pytest.mark.parametrize("case", VALID + INVALID, ids=lambda c: c["name"])
def test_corpus_case_agrees_or_differs_as_documented(case: dict[str, object]) -> None:
    data = case["bytes"]
    assert isinstance(data, bytes)
    check(data)


def test_valid_corpus_mostly_agrees() -> None:
    agree = sum(compare(c["bytes"]) is None for c in VALID)
    assert agree >= 0.8 * len(VALID), f"only {agree} of {len(VALID)} valid cases agree"


@SETTINGS
@given(requests())
def test_generated_requests_agree(req: tuple[bytes, list[object]]) -> None:
    check(req[0])


@SETTINGS
@given(st.data(), requests())
def test_mutated_requests_agree_or_differ_as_documented(
        data: st.DataObject, req: tuple[bytes, list[object]]) -> None:
    check(data.draw(mutations(req[0])))


def test_report() -> None:
    """Last in the file: what the run saw (for the closing note of a long run)."""
    print(f"\nFIGURE differential: {sum(SEEN.values())} inputs; {dict(SEEN.most_common())}")
