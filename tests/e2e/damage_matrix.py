"""Damage at rest, every object kind x every way storage breaks, through the real CLI.

One template repository holds two snapshots of two different disks (A, then B... see `build`), a
run record, a stale lock and a damage record. Each scenario copies it, damages one object, and runs
what a user would: `check --read-data`, `restore` of the affected snapshot (A) and of an unaffected
one (B), `backup` of A again, then `repair index`, `repair packs`, `repair snapshots`, and again
`check --read-data` and both restores. tests/e2e/test_damage_matrix.py asserts the invariants on a
sample; `python -m tests.e2e.damage_matrix docs/damage-matrix.md` writes the whole table.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import Cli

KINDS = ("data pack", "chunk-list pack", "index segment", "snapshot manifest", "run record", "key file", "config",
         "lock", "damage record")
DAMAGES = ("flip first byte", "flip last byte", "flip middle byte", "truncate by one", "truncate half",
           "zero 4 KiB", "delete")
#: every exit code the agent documents (docs/errors.md); anything else is a bug
TYPED_EXITS = {0, 3, 4, 10, 11, 12, 13, 14, 15, 16, 17, 18}
#: kinds without which nothing opens: every command must fail, naming the object
UNOPENABLE = ("key file", "config")


@dataclass
class Template:
    root: Path
    img_a: Path
    img_b: Path
    snap_a: str
    snap_b: str
    victims: dict[str, Path]  # kind -> the object damaged (relative to the repository)


@dataclass
class Step:
    name: str
    code: int
    message: str
    output: str
    identical: bool | None = None  # restores: byte-identical to the source


@dataclass
class Outcome:
    kind: str
    damage: str
    steps: list[Step] = field(default_factory=list)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def _files(repo: Path, prefix: str) -> set[Path]:
    return {p.relative_to(repo) for p in (repo / prefix).rglob("*") if p.is_file() and not p.name.startswith(".")}


def _image(path: Path, mib: int, seed: int) -> Path:
    rng = random.Random(seed)
    with open(path, "wb") as f:
        for i in range(mib):
            f.write(rng.randbytes(512 << 10) + (f"{seed} line {i} ".encode() * 60000)[: 512 << 10])
    return path


_PLANT = """
import os, sys
from agent.repo.damage import DamageRecord
from agent.repo.repository import Repository
from backends.local import LocalBackend
repo = Repository.open(LocalBackend(sys.argv[1]), open(sys.argv[2], 'rb').read().strip())
repo.save_damage(DamageRecord(packs={'0' * 64: ('planted by the damage matrix', None)}, time='2000-01-01'), [])
repo.lock(exclusive=False, command='killed')
os._exit(0)  # like kill -9: the lock record stays behind, stale
"""


def build(root: Path) -> Template:
    """Disk B is backed up first, then disk A (different data): damage to A's objects must not
    touch B. A backup stopped at once leaves a run record; a killed process leaves a lock."""
    root.mkdir(parents=True, exist_ok=True)
    cli = Cli(root)
    img_a, img_b = _image(root / "a.img", 6, 1), _image(root / "b.img", 4, 2)
    cli("init", "--pack-size", "1")
    snap_b = cli("backup", str(img_b), "--json").json()["snapshot_id"]
    before = {p: _files(cli.repo, p) for p in ("data", "index")}
    snap_a = cli("backup", str(img_a), "--json").json()["snapshot_id"]
    packs_a = sorted(_files(cli.repo, "data") - before["data"], key=lambda p: (cli.repo / p).stat().st_size)
    segs_a = sorted(_files(cli.repo, "index") - before["index"], key=lambda p: (cli.repo / p).stat().st_size)
    img_c = _image(root / "c.img", 2, 3)
    assert cli("backup", str(img_c), "--max-duration", "0s", check=False).code == 3
    subprocess.run([sys.executable, "-c", _PLANT, str(cli.repo), str(cli.passfile)], check=True, env=cli.env)
    one = {k: sorted(_files(cli.repo, k)) for k in ("runs", "keys", "locks", "damage")}
    assert all(len(v) == 1 for v in one.values()), one
    victims = {"data pack": packs_a[-1], "chunk-list pack": packs_a[0], "index segment": segs_a[-1],
               "snapshot manifest": Path("snapshots") / snap_a, "run record": one["runs"][0],
               "key file": one["keys"][0], "config": Path("config"), "lock": one["locks"][0],
               "damage record": one["damage"][0]}
    return Template(root, img_a, img_b, snap_a, snap_b, victims)


def damage(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "delete":
        path.unlink()
        return
    if how.startswith("flip"):
        at = {"flip first byte": 0, "flip last byte": len(raw) - 1, "flip middle byte": len(raw) // 2}[how]
        raw[at] ^= 0x01
    elif how == "truncate by one":
        del raw[-1]
    elif how == "truncate half":
        del raw[len(raw) // 2:]
    elif how == "zero 4 KiB":  # a sector-sized hole, e.g. a NAS that lost power mid-write
        start = max(0, len(raw) // 2 - 2048)
        raw[start:start + 4096] = bytes(min(4096, len(raw) - start))
    else:
        raise ValueError(how)
    path.write_bytes(bytes(raw))


def _message(err: str, out: str, first: bool = False) -> str:
    """The line that says most: the first error, else the first warning, else the result line
    (`first`: the first line of the output, e.g. a repair's first action)."""
    lines = (err + "\n" + out).splitlines()
    for prefix in ("error:", "warning:"):
        found = [ln for ln in lines if ln.startswith(prefix)]
        if found:
            return found[0]
    outs = [ln for ln in out.splitlines() if ln.strip()]
    results = [ln for ln in outs if re.search(r"\b(saved|restored|checked)\b", ln)]
    return (outs[:1] if first else results[-1:] or outs[-1:] or [""])[0]


def run(template: Template, kind: str, how: str, work: Path) -> Outcome:
    work.mkdir(parents=True)
    cli = Cli(work)
    shutil.copytree(template.root / "repo", cli.repo)
    damage(cli.repo / template.victims[kind], how)
    result = Outcome(kind, how)

    def step(name: str, *args: str, compare: Path | None = None) -> Step:
        out = work / f"{name}.img"
        if compare is not None:
            args = (*args, "--to", str(out))
        res = cli(*args, check=False)
        s = Step(name, res.code, _message(res.err, res.out, first=name.startswith("repair")), res.out + res.err)
        if compare is not None:
            s.identical = out.exists() and res.code == 0 and out.read_bytes() == compare.read_bytes()
            out.unlink(missing_ok=True)
        result.steps.append(s)
        return s

    step("check", "check", "--read-data")
    step("restore A", "restore", template.snap_a, compare=template.img_a)
    step("restore B", "restore", template.snap_b, compare=template.img_b)
    backup = step("backup A", "backup", str(template.img_a))
    step("repair index", "repair", "index")
    step("repair packs", "repair", "packs")
    step("repair snapshots", "repair", "snapshots", "--zero-lost")
    step("check after", "check", "--read-data")
    step("restore A after", "restore", template.snap_a, compare=template.img_a)
    step("restore B after", "restore", template.snap_b, compare=template.img_b)
    new_a = re.search(r"snapshot ([0-9a-f]{8,}) saved", backup.output)
    if backup.code == 0 and new_a:
        step("restore new A after", "restore", new_a.group(1), compare=template.img_a)
    shutil.rmtree(work)
    return result


def violations(o: Outcome) -> list[str]:
    """What must never happen, whatever the damage."""
    bad = []
    for s in o.steps:
        if "Traceback" in s.output or "internal error" in s.output:
            bad.append(f"{s.name}: internal error")
        if s.code not in TYPED_EXITS:
            bad.append(f"{s.name}: untyped exit {s.code}")
        if s.identical is False and s.code == 0:
            bad.append(f"{s.name}: exit 0 but the restored image differs (silent corruption)")
    if o.kind in UNOPENABLE:
        if o.damage != "delete" and not any(w in o.step("check").message for w in (o.kind, "damaged", "repository")):
            bad.append("check does not name the damaged object")
        return bad
    if o.step("check after").code != 0:
        bad.append(f"check after repair: exit {o.step('check after').code}: {o.step('check after').message}")
    if not o.step("restore B after").identical:
        bad.append("the unaffected snapshot no longer restores byte-identically after repair")
    new_a = [s for s in o.steps if s.name == "restore new A after"]
    if new_a and not new_a[0].identical:
        bad.append("a snapshot taken after the damage does not restore byte-identically")
    return bad


def _cell(s: Step) -> str:
    if s.identical is not None and s.code == 0:
        return "ok, identical" if s.identical else "**differs**"
    text = s.message.replace("|", "\\|").replace("`", "'")
    text = text if len(text) <= 90 else text[:87] + "..."
    return f"{s.code}: {text}" if s.code else f"0 {text}".strip()


_REPAIRS = ("repair index", "repair packs", "repair snapshots")
_IDLE = ("nothing to repair", "no pack is recorded", "wrote one index segment for")


def _repair_cell(names: dict[str, Step]) -> str:
    """The three repairs' exit codes, and what the one that did something said."""
    steps = [names[r] for r in _REPAIRS]
    codes = "/".join(str(s.code) for s in steps)
    busy = [s for s in steps if s.code or not s.message.startswith(_IDLE)]
    shown = busy[0] if busy else steps[0]
    return f"{codes}: {_cell(Step(shown.name, 0, f'{shown.name.split()[1]}: {shown.message}', ''))[2:]}"


def table(outcomes: list[Outcome]) -> str:
    cols = ("check", "restore A", "restore B", "backup A", "repair", "check after", "restore A after",
            "restore B after", "restore new A after")
    lines = ["| object | damage | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for o in outcomes:
        names = {s.name: s for s in o.steps}
        cells = [_repair_cell(names) if c == "repair" else _cell(names[c]) if c in names else "-" for c in cols]
        lines.append(f"| {o.kind} | {o.damage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(out: Path) -> None:
    import tempfile

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        template = build(Path(d) / "template")
        outcomes, problems = [], []
        for kind in KINDS:
            for how in DAMAGES:
                o = run(template, kind, how, Path(d) / f"{KINDS.index(kind)}-{DAMAGES.index(how)}")
                outcomes.append(o)
                problems += [f"{kind} / {how}: {v}" for v in violations(o)]
                print(f"{kind} / {how}: {'; '.join(violations(o)) or 'ok'}", file=sys.stderr)
    took = time.monotonic() - t0
    header = (f"<!-- written by `python -m tests.e2e.damage_matrix {out}`; do not edit -->\n\n"
              "# Damage matrix\n\n"
              f"{len(outcomes)} scenarios ({len(KINDS)} object kinds x {len(DAMAGES)} damages) in {took:.0f} s; "
              f"{len(problems)} violation(s) of the invariants (tests/e2e/damage_matrix.py `violations`).\n\n"
              "Each cell is the exit code and the first error or warning line (`ok, identical`: the restore "
              "wrote exactly the original image). Disk A's objects are the ones damaged; B is a snapshot of "
              "another disk. The repair column gives the exit codes of `repair index`, `repair packs` and "
              "`repair snapshots --zero-lost` (run in that order) and what the first of them that found work "
              "said; `restore new A after` restores the snapshot that `backup A` wrote after the damage.\n\n")
    out.write_text(header + table(outcomes) + "\n" + ("\n".join(f"- {p}" for p in problems) + "\n" if problems else ""))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
