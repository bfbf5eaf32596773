"""Seeded damage at rest through the real CLI: whatever object breaks and however, every command
works or fails with a typed error, nothing restores wrong bytes with exit 0, and the repair
commands bring `check --read-data` back to clean with the unaffected snapshot byte-identical.
The full table (every kind x every damage) is docs/damage-matrix.md."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e import damage_matrix as m


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return m.build(tmp_path_factory.mktemp("damage-template"))


_counter = itertools.count()


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(m.KINDS), how=st.sampled_from(m.DAMAGES))
def test_any_single_damage_is_typed_contained_and_repaired(template, tmp_path_factory, kind, how):
    outcome = m.run(template, kind, how, tmp_path_factory.mktemp("damage") / str(next(_counter)))
    assert m.violations(outcome) == [], [(s.name, s.code, s.message) for s in outcome.steps]


@pytest.mark.parametrize("how", ["flip first byte", "truncate by one", "delete"])
def test_every_pack_damage_heals_with_the_next_backup(template, tmp_path, how):
    """The data pack case at the edges: after the backup and repair, snapshot A (taken before the
    damage) restores byte-identically again, because the backup uploaded the lost chunks."""
    outcome = m.run(template, "data pack", how, tmp_path / "w")
    assert m.violations(outcome) == []
    assert outcome.step("check").code == 14
    assert outcome.step("restore A after").identical
