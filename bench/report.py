"""Turn bench/results/latest.json into docs/benchmarks.md (medians, ratios, targets) and a PNG chart.

The Markdown is regenerated on every run, except the hand-written sections between
`<!-- manual:NAME -->` and `<!-- /manual:NAME -->`, which are carried over verbatim: the lead writes
profiles and sweeps there, and a rerun of the benchmark must not erase them.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from bench.verify import sparse_grade

TOOLS = ("agent", "restic-0.18", "restic-0.14", "borg")
ANCHOR = "restic-0.18"  # the targets are set against this one
OTHERS = ("restic-0.18", "restic-0.14", "borg")  # the agent's ratios are taken against each
LABEL = {"agent": "agent", "restic-0.18": "restic 0.18", "restic-0.14": "restic 0.14", "borg": "borg"}
LEGACY = {"restic": "restic-0.14"}  # tool names in result files written before restic 0.18 joined
BACKUPS = tuple(f"backup day{d}" for d in range(4))
RESTORES = ("restore day3", "restore day0")
STEPS = ("init",) + BACKUPS + RESTORES
MANUAL = (("profile", "Profile: where the time goes"),
          ("sweep", "Chunk size and compression sweep"),
          ("scale", "Scale: 64 GiB sparse image and 1M-chunk index"),
          ("browse", "Granular restore: ls, extract, one partition"),
          ("status", "Fleet status"),
          ("unchanged", "Unchanged image files"),
          ("cloud", "Cloud paths: round trips and a capped link"),
          ("copy", "Off-site copies"))
PLACEHOLDER = "_To be filled in by hand; kept verbatim when the benchmark regenerates this page._"


def load(path: Path) -> dict:
    """The results with older tool names mapped to today's (a file from before restic 0.18 joined
    measured restic 0.14 under the name `restic`)."""
    results = json.loads(path.read_text())
    for s in results["steps"]:
        s["tool"] = LEGACY.get(s["tool"], s["tool"])
    meta = results["meta"]
    meta["tools"] = [LEGACY.get(t, t) for t in meta.get("tools", [])]
    versions = meta.get("machine", {}).get("versions", {})
    for old, new in LEGACY.items():
        if old in versions:
            versions[new] = versions.pop(old)
    return results


# -- numbers ---------------------------------------------------------------------------------
def _ok(steps: list[dict], tool: str, step: str) -> list[dict]:
    return [s for s in steps if s["tool"] == tool and s["step"] == step and s["rc"] == 0]


def median(steps: list[dict], tool: str, step: str, key: str) -> float | None:
    vals = [s[key] for s in _ok(steps, tool, step) if s.get(key) is not None]
    return statistics.median(vals) if vals else None


def _fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}x"


def _yes(steps: list[dict], tool: str, step: str, key: str) -> str:
    runs = [s for s in steps if s["tool"] == tool and s["step"] == step]
    if not runs:
        return "–"
    n = sum(bool(s.get(key)) for s in runs)
    return "yes" if n == len(runs) else ("no" if n == 0 else f"{n}/{len(runs)}")


# -- tables ----------------------------------------------------------------------------------
def _ratio_head() -> str:
    return " | ".join(f"agent/{LABEL[t]}" for t in OTHERS)


def _ratios(vals: dict[str, float | None]) -> list[str]:
    return [_ratio(vals["agent"], vals[t]) for t in OTHERS]


def _align(head: str, left: int = 1) -> str:
    return "|" + "---|" * left + "---:|" * (head.count("|") - 1 - left)


def _metric_table(steps: list[dict], key: str, scale: float, digits: int, with_cat: bool, rows=STEPS) -> list[str]:
    head = ("| step | " + " | ".join(LABEL[t] for t in TOOLS) + (" | `cat` floor" if with_cat else "")
            + f" | {_ratio_head()} |")
    out = [head, _align(head)]
    for step in rows:
        vals = {t: median(steps, t, step, key) for t in TOOLS}
        vals = {t: None if v is None else v / scale for t, v in vals.items()}
        cells = [_fmt(vals[t], digits) for t in TOOLS]
        if with_cat:
            c = median(steps, "cat", step, key)
            cells.append(_fmt(None if c is None else c / scale, digits))
        out.append(f"| {step} | " + " | ".join(cells + _ratios(vals)) + " |")
    return out


def _repo_table(steps: list[dict]) -> list[str]:
    head = "| after | " + " | ".join(LABEL[t] for t in TOOLS) + f" | {_ratio_head()} |"
    out = [head, _align(head)]
    for step in ("init",) + BACKUPS:
        size = {t: median(steps, t, step, "repo_bytes") for t in TOOLS}
        size = {t: None if v is None else v / 1e6 for t, v in size.items()}
        out.append(f"| {step.replace('backup ', '')} | " + " | ".join([_fmt(size[t]) for t in TOOLS] + _ratios(size))
                   + " |")
    return out


def _added_table(steps: list[dict]) -> list[str]:
    head = ("| night | " + " | ".join(f"{LABEL[t]} MB" for t in TOOLS) + " | files "
            + " / ".join(LABEL[t] for t in TOOLS) + " |")
    out = [head, _align(head)]
    for step in ("init",) + BACKUPS:
        added = [median(steps, t, step, "added_bytes") for t in TOOLS]
        files = " / ".join(_fmt(median(steps, t, step, "repo_files"), 0) for t in TOOLS)
        out.append(f"| {step.replace('backup ', '')} | " + " | ".join(_fmt(None if a is None else a / 1e6)
                                                                      for a in added) + f" | {files} |")
    return out


def _sparse(steps: list[dict], tool: str, step: str) -> str:
    """The worst grade over the rounds (recomputed, so older result files read the same way)."""
    runs = [s for s in steps if s["tool"] == tool and s["step"] == step and s["rc"] == 0]
    if not runs:
        return "–"
    grades = {sparse_grade(s["restored_alloc"], s["original_alloc"], s["apparent"]) for s in runs}
    return next(g for g in ("no", "partly", "yes") if g in grades)


def _restore_table(steps: list[dict]) -> list[str]:
    out = ["| restore | tool | wall s | allocated MB | source image allocated MB | sparse | verified | how |",
           "|---|---|---:|---:|---:|---|---|---|"]
    for step in RESTORES:
        for t in TOOLS:
            alloc = median(steps, t, step, "restored_alloc")
            src = median(steps, t, step, "original_alloc")
            out.append(f"| {step.replace('restore ', '')} | {LABEL[t]} | {_fmt(median(steps, t, step, 'wall_s'))} | "
                       f"{_fmt(alloc and alloc / 1e6, 0)} | {_fmt(src and src / 1e6, 0)} | "
                       f"{_sparse(steps, t, step)} | {_yes(steps, t, step, 'verified')} | {_how(steps, t, step)} |")
    return out


def _how(steps: list[dict], tool: str, step: str) -> str:
    """How the restores were verified: byte for byte, or (the agent's used-blocks snapshots, whose
    free space is zeros) by the filesystems' checkers and every live file (bench.verify)."""
    details = {str(s.get("verify_detail", "")) for s in steps if s["tool"] == tool and s["step"] == step}
    if not details:
        return "–"
    if all(d in ("equal", "byte-identical") for d in details):
        return "byte for byte"
    if all(d.startswith("filesystems and files") for d in details):
        return "fsck + every file"
    return "; ".join(sorted(details))[:80]


def targets(steps: list[dict], against: str = ANCHOR) -> list[tuple[str, str, str, bool | None]]:
    """(target, agent/AGAINST measured, limit, met) for the goals set against restic 0.18."""
    def r(step: str, key: str) -> float | None:
        a, b = median(steps, "agent", step, key), median(steps, against, step, key)
        return None if a is None or not b else a / b

    rows = []
    def add(name: str, val: float | None, limit: float, extra: bool = True) -> None:
        rows.append((name, "–" if val is None else f"{val:.2f}x", f"<= {limit}x",
                     None if val is None else (val <= limit and extra)))
    add("day0 backup wall", r("backup day0", "wall_s"), 0.3)  # used blocks only (issue "read less")
    for d in (1, 2, 3):
        add(f"day{d} incremental wall", r(f"backup day{d}", "wall_s"), 0.4)
    for step in RESTORES:
        sparse = _sparse(steps, "agent", step) == "yes"
        add(f"{step} wall (and sparse: {'yes' if sparse else 'no'})", r(step, "wall_s"), 0.45, sparse)
    add("repository after day3", r("backup day3", "repo_bytes"), 0.75)
    for step in STEPS:
        add(f"peak memory, {step}", r(step, "peak_rss_kib"), 1.0)
    return rows


def _targets_table(steps: list[dict]) -> list[str]:
    """The targets against restic 0.18, with the same ratio against 0.14 beside them for reference."""
    old = {name: val for name, val, _, _ in targets(steps, "restic-0.14")}
    out = [f"| target | limit | agent/{LABEL[ANCHOR]} | met | agent/restic 0.14 (reference) |",
           "|---|---:|---:|---|---:|"]
    for name, val, limit, met in targets(steps):
        out.append(f"| {name} | {limit} | {val} | {'–' if met is None else ('yes' if met else '**no**')} "
                   f"| {old[name]} |")
    return out


# -- page ------------------------------------------------------------------------------------
def manual_sections(old: str) -> dict[str, str]:
    found = {}
    for name, _ in MANUAL:
        m = re.search(rf"<!-- manual:{name} -->\n?(.*?)<!-- /manual:{name} -->", old, re.DOTALL)
        if m:
            found[name] = m.group(1).strip("\n")
    return found


def _machine(meta: dict) -> list[str]:
    m = meta.get("machine", {})
    v = m.get("versions", {})
    return [(f"- CPU: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; RAM {m.get('ram_bytes', 0) / 2**30:.1f} GiB; "
             f"kernel {m.get('kernel', '?')}; {m.get('os', '?')}"),
            (f"- work directory {meta.get('work', '?')} on {m.get('work_filesystem', '?')} (images, repositories and "
             "restores on the same disk)"),
            (f"- {v.get('agent', 'agent ?')} (commit {m.get('agent_commit', '?')}, "
             f"source digest {meta.get('agent_source_digest', '?')}, Python {m.get('python', '?')}); "
             + "; ".join(v.get(t, f"{LABEL[t]}: not measured") for t in TOOLS[1:])),
            (f"- {meta.get('rounds', '?')} round(s), {meta.get('started', '?')} to {meta.get('finished', '?')}; "
             f"page cache dropped before every step: {'yes' if m.get('root') else 'no (not root)'}")]


def render(results: dict, old: str, chart: str, source: str = "bench/results/latest.json") -> str:
    meta, steps = results["meta"], results["steps"]
    manual = manual_sections(old)
    n = meta.get("rounds", "?")
    lines = [
        "# Benchmarks: agent vs restic vs borg",
        "",
        f"<!-- Generated by bench/report.py from {source}; edit only the manual sections. -->",
        "",
        "Four nights of one 4 GiB Debian server disk image (`shared/bench/make-images.sh`: day0 install, day1",
        "small changes, day2 a 247 MB database and a 164 MB CSV, day3 a 293 MB tar, an 8-byte in-place change",
        "and a 1000-byte insertion), backed up night after night into a fresh local repository per tool,",
        "then day3 and day0 restored and compared byte for byte with the source.",
        "",
        "## How to reproduce",
        "",
        "```",
        "make bench                  # root: installs restic 0.14 and borg, fetches restic 0.18, builds the",
        "                            # images, runs 3 rounds",
        "BENCH_ROUNDS=5 make bench   # more rounds (also BENCH_DATA, BENCH_WORK, BENCH_IMAGES_SCRIPT)",
        "```",
        "",
        "## Machine and versions",
        "",
        *_machine(meta),
        "",
        "## Method",
        "",
        "- Each night's image is copied (`cp --sparse=always`, untimed, a new file) to one path, `WORK/disk.img`,",
        "  and every tool backs up that path, as a nightly job backs up one disk: restic's parent snapshot and",
        "  borg's files cache work as in real use (they cannot skip the file: it changed).",
        "- Steps are interleaved per step (all tools' day0, then all tools' day1, ...) and the tool order rotates",
        "  each round, so the tools meet the same machine conditions and none always goes first.",
        "- Before every step: `sync` and `echo 3 > /proc/sys/vm/drop_caches`. User+sys CPU is the tool's own wait4",
        "  rusage (its reaped child processes included), taken through GNU `time` (a child spawned straight from",
        "  Python would report the harness's own peak RSS as its floor). Peak memory is the larger of that",
        "  rusage's peak RSS (one process's) and the peak of the PSS summed over the tool's process tree, sampled",
        "  every 50 ms (the agent's restore forks worker processes). `cat` is the floor: reading the image once.",
        "- Settings: agent defaults (zstd 2, 256 KiB average chunks, Argon2id key, 16 MiB packs, used blocks "
        "only: free space",
        "  is neither read nor stored, [backup.md](backup.md#used-blocks-only)); restic defaults (repository v2,",
        "  compression auto) for both restics, each with its own repository and cache; borg",
        "  `init --encryption=repokey-blake2`, `create --compression zstd,3`, `extract --sparse`.",
        "- Restores are verified byte for byte against the night's image, except the agent's, whose free space",
        "  restores as zeros: each partition's filesystem checker must be clean and every live file identical",
        "  (`bench/verify.py` with `tests/fscompare.py`, which read the filesystems with their own tools).",
        "- restic 0.18 (the anchor of the targets) is Debian trixie's package, a static Go binary that runs on",
        "  bookworm. `bench/fetch.py` fetches it at bench time with `apt-get download` under a private apt",
        "  configuration: its sources are this machine's own apt sources, read at run time, with the suite",
        "  bookworm renamed to trixie, and its lists and cache live in a private directory, so the system's",
        "  apt state is untouched. The package is unpacked with `dpkg-deb -x` into",
        "  `BENCH_TOOLS/restic-0.18` (default `/tmp/bench-tools`), not installed. It restores with",
        "  `restore ID --target DIR --sparse`.",
        "- restic 0.14 is Debian bookworm's package (`apt-get install restic`). It restores with",
        "  `restore ID --target DIR`: 0.14 has no sparse option, so its restores are fully allocated.",
        "- borg is bookworm's 1.2. Trixie's borg 1.4 is built for Python 3.13, whose interpreter needs",
        "  glibc 2.38 (bookworm has 2.36), so it cannot run here.",
        f"- Medians of {n} round(s). Repository size is `du -sb` of the repository directory.",
        "",
        f"![wall time per step and repository size]({chart})",
        "",
        f"## Targets against {LABEL[ANCHOR]}",
        "",
        *_targets_table(steps),
        "",
        "## Wall time, s",
        "",
        *_metric_table(steps, "wall_s", 1, 1, True),
        "",
        "## CPU time (user + sys), s",
        "",
        *_metric_table(steps, "cpu_s", 1, 1, True),
        "",
        "## Peak memory (RSS, or PSS of the process tree where larger), MB",
        "",
        *_metric_table(steps, "peak_rss_kib", 1e6 / 1024, 0, False),
        "",
        "## Repository size after each night, MB",
        "",
        *_repo_table(steps),
        "",
        "## Added by each night, MB, and files in the repository",
        "",
        *_added_table(steps),
        "",
        "## Restores",
        "",
        "Sparse: yes when the restored file allocates at most 5 % more than the source image (dayN.img); partly",
        "when it has holes but fewer (under 90 % of the 4 GiB apparent size); no when it is fully allocated.",
        "",
        *_restore_table(steps),
        "",
    ]
    for name, title in MANUAL:
        lines += [f"## {title}", "", f"<!-- manual:{name} -->", manual.get(name, PLACEHOLDER),
                  f"<!-- /manual:{name} -->", ""]
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = results["steps"]
    colors = {"agent": "#2b7bba", "restic-0.18": "#b35806", "restic-0.14": "#fdb863", "borg": "#5aae61",
              "cat": "#999999"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    names = BACKUPS + RESTORES
    series = TOOLS + ("cat",)
    width = 0.8 / len(series)
    for i, t in enumerate(series):
        vals = [median(steps, t, s, "wall_s") or 0 for s in names]
        ax1.bar([x + (i - (len(series) - 1) / 2) * width for x in range(len(names))], vals, width,
                label=LABEL.get(t, "cat (read floor)"), color=colors[t])
    ax1.set_xticks(range(len(names)), [s.replace("backup ", "").replace("restore ", "restore ") for s in names])
    ax1.set_ylabel("wall time, s (median)")
    ax1.set_title("Wall time per step (page cache dropped)")
    ax1.legend()
    width = 0.8 / len(TOOLS)
    for i, t in enumerate(TOOLS):
        vals = [(median(steps, t, s, "repo_bytes") or 0) / 1e6 for s in BACKUPS]
        ax2.bar([x + (i - (len(TOOLS) - 1) / 2) * width for x in range(len(BACKUPS))], vals, width, label=LABEL[t],
                color=colors[t])
    ax2.set_xticks(range(len(BACKUPS)), [s.replace("backup ", "after ") for s in BACKUPS])
    ax2.set_ylabel("repository size, MB")
    ax2.set_title("Repository size")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results_path: Path, doc: Path, png: Path, repo_root: Path | None = None) -> None:
    results = load(results_path)
    old = doc.read_text() if doc.exists() else ""
    chart(results, png)
    rel = Path("img") / png.name if png.parent.name == "img" else png
    source = results_path.resolve()
    if repo_root is not None and source.is_relative_to(repo_root.resolve()):
        source = source.relative_to(repo_root.resolve())
    doc.write_text(render(results, old, str(rel), str(source)))
