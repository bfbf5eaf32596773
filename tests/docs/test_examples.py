"""Every `console` example in docs/ runs against a temporary repository and does what the page shows.

A sysadmin copies commands from the docs in the middle of a restore; a flag that was renamed or an
output that changed must fail here, not there. The convention is in tests/docs/examples.py and
docs/contributing-docs.md. Pages run concurrently (each in its own shell and HOME) to keep this fast.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.diskimage import MissingTool, build_sample_image, require_tools
from tests.docs import examples
from tests.docs.examples import ExampleError, first_failure, missing_output, parse_page, run_page

PAGES = examples.pages_with_examples()


@pytest.fixture(scope="session")
def sample_disk(tmp_path_factory) -> Path:
    try:
        require_tools()
    except MissingTool as exc:
        pytest.skip(str(exc))
    path = tmp_path_factory.mktemp("docs-disk") / "disk.img"
    build_sample_image(path, marker=b"docs example marker")
    return path


@pytest.fixture(scope="session")
def agent(tmp_path_factory):
    with examples.agent_on_path(tmp_path_factory.mktemp("docs-agent")) as on_path:
        yield on_path


@pytest.fixture(scope="session")
def page_runs(request, tmp_path_factory, sample_disk, agent) -> dict[str, Future]:
    """Start every selected page at once; each test then waits for its own page."""
    selected = {item.callspec.params["page"] for item in request.session.items
                if item.originalname == "test_page_examples" and hasattr(item, "callspec")}
    pool = ThreadPoolExecutor(max_workers=4)
    runs = {}

    def run(path: Path, workdir: Path):
        page = parse_page(path)  # a malformed block fails this page's test, not the collection
        return page, run_page(page, workdir, sample_disk, agent)

    for path in PAGES:
        if path.name in selected:
            runs[path.name] = pool.submit(run, path, tmp_path_factory.mktemp(f"docs-{path.stem}"))
    yield runs
    pool.shutdown(wait=True)


@pytest.mark.parametrize("page", [p.name for p in PAGES])
def test_page_examples(page, page_runs):
    parsed, results = page_runs[page].result()
    assert parsed.commands, f"docs/{page} has a setup comment but no console block"
    problem = first_failure(parsed, results)
    assert problem is None, f"docs/{page}: {problem}"


def test_the_main_pages_have_runnable_examples():
    """The pages a reader copies from first must stay executable (examples not moved to ```sh)."""
    names = {p.name for p in PAGES}
    assert {"quickstart.md", "restore.md", "troubleshooting.md", "contributing-docs.md"} <= names


# ---- the convention itself -----------------------------------------------------------------------

SAMPLE = """\
Intro.

<!-- docs-test setup: echo prepared > state -->

```console
$ cat state
prepared
$ printf 'one\\ntwo  words\\nthree\\n'
one
two words
...
three
$ echo a \\
    b   # exit 0
a b
$ false   # exit 1
```

```sh
rm -rf /   # never run: not a console block
```

````markdown
<!-- docs-test setup: echo not run either -->
```console
$ echo not run: inside another fence
```
````
"""


def test_parse_commands_outputs_exit_codes_and_setup(tmp_path):
    page = parse_page(tmp_path / "p.md", SAMPLE)
    assert page.setup == ["echo prepared > state"]
    assert [c.text for c in page.commands] == ["cat state", "printf 'one\\ntwo  words\\nthree\\n'",
                                               "echo a \\\n    b   # exit 0", "false   # exit 1"]
    assert [c.exit_code for c in page.commands] == [0, 0, 0, 1]
    assert page.commands[1].expected == ["one", "two words", "three"]
    assert page.commands[0].line == 6


def test_malformed_blocks_are_refused(tmp_path):
    with pytest.raises(ExampleError, match="p.md:2: output before the first"):
        parse_page(tmp_path / "p.md", "```console\njust output\n```\n")
    with pytest.raises(ExampleError, match="p.md:1: console block without"):
        parse_page(tmp_path / "p.md", "```console\n\n```\n")


def test_output_matching_is_ordered_with_wildcards():
    out = "snapshot 3f9a2c1e saved: /tmp/x/disk.img\n  size   64.0 MiB, read 6.0 MiB\n"
    assert missing_output(["snapshot ... saved: .../disk.img", "size 64.0 MiB"], out) is None
    assert missing_output(["size 64.0 MiB", "snapshot"], out) == "snapshot"  # order matters
    assert missing_output(["size 65.0 MiB"], out) == "size 65.0 MiB"


def test_runner_reports_wrong_exit_codes_and_missing_output(tmp_path, sample_disk, agent):
    good = parse_page(tmp_path / "good.md", SAMPLE)
    results = run_page(good, tmp_path / "good", sample_disk, agent)
    assert first_failure(good, results) is None
    assert [r.code for r in results] == [0, 0, 0, 0, 1]  # setup, then the four commands

    bad = parse_page(tmp_path / "bad.md", "```console\n$ true   # exit 3\n$ echo later\n```\n")
    results = run_page(bad, tmp_path / "bad", sample_disk, agent)
    assert "bad.md:2: `true   # exit 3` exited 0, the page expects 3" in first_failure(bad, results)
    assert results[1].code is None  # the page stopped at the first failure

    wrong = parse_page(tmp_path / "wrong.md", "```console\n$ echo hello\ngoodbye\n```\n")
    problem = first_failure(wrong, run_page(wrong, tmp_path / "wrong", sample_disk, agent))
    assert "did not print" in problem and "goodbye" in problem and "hello" in problem


def test_the_page_environment_is_a_fresh_home_with_a_disk_and_the_agent_under_test(tmp_path, sample_disk, agent):
    page = parse_page(tmp_path / "env.md", """\
```console
$ pwd; echo "$HOME"; ls
.../home
.../home
disk.img
passphrase
$ test ! -e "$AGENT_REPO" && test -s "$AGENT_PASSPHRASE_FILE" && echo "$AGENT_KDF $TZ"
1,8,1 UTC
$ agent init
created repository ... at .../home/repo
```
""")
    results = run_page(page, tmp_path / "env", sample_disk, agent)
    assert first_failure(page, results) is None


def test_the_fork_server_agent_behaves_like_the_real_console_script(tmp_path, agent):
    """The examples run through the fork server; it must be indistinguishable from `agent` itself."""
    real = Path(sys.executable).parent / "agent"
    if not agent.env or not real.exists():
        pytest.skip("the examples already run the real console script")
    home = tmp_path / "home"
    home.mkdir()
    (home / "passphrase").write_text(examples.PASSPHRASE)
    env = examples.page_env(home, agent)
    cases = [["--help"], ["snapshots"], ["init"], ["snapshots", "--json"], ["no-such-command"],
             ["restore", "--at", "someday", "--to", "x.img"], ["backup", "missing.img"]]
    for args in cases:  # in order: `init` changes what the later commands see, for both alike
        ours = subprocess.run(["agent", *args], capture_output=True, text=True, env=env, cwd=home,
                              stdin=subprocess.DEVNULL)
        theirs = subprocess.run([str(real), *args], capture_output=True, text=True, env=env, cwd=home,
                                stdin=subprocess.DEVNULL)
        if args == ["init"]:  # the second init finds the repository the first one made
            assert (ours.returncode, theirs.returncode) == (0, 10), (ours.stderr, theirs.stderr)
            continue
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), args
