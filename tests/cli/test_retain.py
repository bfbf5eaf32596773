"""`agent retain` where there is no Object Lock: a usage error that says why, not a traceback."""

from __future__ import annotations


def test_retain_without_object_lock_says_there_is_nothing_to_extend(cli):
    cli("init")
    res = cli("retain", check=False)
    assert res.code == 2, res.err
    assert "no Object Lock default retention" in res.err and "Traceback" not in res.err
    res = cli("retain", "--period", "1x", check=False)
    assert res.code == 2 and "cannot read the duration" in res.err, res.err
