"""Odd input gets a clear error with exit 2, never an internal error."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.times import parse_instant
from agent.errors import UsageError


@pytest.mark.parametrize("args,env,message", [
    (("snapshots",), "dir", "the passphrase file {d} is a directory"),
    (("--config", "{d}", "snapshots"), None, "the config file {d} is a directory"),
    (("restore", "--at", "99999999d", "--to", "x.img"), None, "further back than any date"),
    (("restore", "--at", "99999999999999999999d", "--to", "x.img"), None, "further back than any date"),
])
def test_odd_input_is_a_usage_error(cli, tmp_path, args, env, message):
    cli("init")
    d = tmp_path / "adir"
    d.mkdir()
    res = cli(*(a.format(d=d) for a in args), check=False,
              env={"AGENT_PASSPHRASE_FILE": str(d)} if env == "dir" else None)
    assert res.code == 2, res
    assert message.format(d=d) in res.err
    assert "internal error" not in res.err and "Traceback" not in res.err


@given(st.text(max_size=30) | st.from_regex(r"\d{1,30}\s?(s|m|min|h|d|w)", fullmatch=True))
def test_parse_instant_returns_a_time_or_a_usage_error(text):
    try:
        value = parse_instant(text)
    except UsageError:
        return
    assert isinstance(value, datetime) and value.tzinfo is not None
