"""`agent verify`: would a snapshot restore, and would its filesystems mount?"""

from __future__ import annotations

from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import stamps, units

_SHOWN_RANGES = 20  # in text; --json lists every one


def verify(
    ctx: typer.Context,
    snapshot: Optional[str] = typer.Argument(None, help="Snapshot id (unique prefix) or 'latest' (the default)."),
    fsck: bool = typer.Option(False, "--fsck", help="Also check each partition's filesystem read-only with its "
                              "own checker (e2fsck -fn, fsck.fat -n, fsck.exfat -n, ntfsfix -n, xfs_repair -n)."),
    at: Optional[str] = typer.Option(None, "--at", help="Newest snapshot at or before this time: a date (end of "
                                     "that day, local time), a timestamp, or yesterday / 3d / 12h."),
    host: Optional[str] = typer.Option(None, "--host", help="Choose among the snapshots of this host."),
    source: Optional[str] = typer.Option(None, "--source", help="Choose among the snapshots of this source path."),
    no_fuse: bool = typer.Option(False, "--no-fuse", help="With --fsck: restore each partition into a temporary "
                                 "sparse file in the cache directory instead of reading it through FUSE."),
    limit_download: Optional[str] = typer.Option(None, "--limit-download", help="Bandwidth limit: 4MiB/s, "
                                                 "20Mbit/s, off, or a timetable. Env: AGENT_LIMIT_DOWNLOAD."),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Read every chunk of a snapshot from storage and authenticate it; --fsck checks its filesystems.

    Exit status 0 when everything is sound, 14 when a chunk is damaged or missing (its image range
    is listed), 5 when a filesystem's checker found it damaged.
    """
    from agent.config.times import parse_instant
    from agent.errors import EXIT_FILESYSTEM_DAMAGED, CorruptObject, UsageError

    app: AppContext = app_context(ctx, json_output)
    if snapshot and at:
        raise UsageError("give a snapshot id or --at, not both")
    app.set_limits(None, limit_download)
    with app.repository() as repo:
        from agent.repo.snapshots import filter_snapshots, pick_at, resolve
        from agent.verify.run import VerifyOptions, run_verify

        repo.verify_storage()  # the stored index and manifests, not cached copies
        damaged_manifests: list[tuple[str, str]] = []
        snaps = filter_snapshots(repo.list_snapshots(damaged_manifests), host=host, source=source)
        for name, problem in damaged_manifests:
            if snapshot and snapshot != "latest" and name.startswith(snapshot.lower()):
                raise CorruptObject(f"snapshot {name[:8]} cannot be verified: its manifest is damaged ({problem})",
                                    hint="`agent repair snapshots` removes the damaged manifest")
            app.warn(f"snapshot {name[:8]} is not listed: {problem}")
        snap = (pick_at(snaps, parse_instant(at), local_host=app.local_host) if at
                else resolve(snaps, snapshot or "latest", local_host=app.local_host))
        app.info(f"verifying snapshot {snap.id[:8]} of {snap.host}:{snap.source_path} from "
                 f"{stamps.human(snap.time)}" + (" (chunks and filesystems)" if fsck
                                                                              else ""))
        with app.progress("verify") as listener:
            res = run_verify(repo, snap, VerifyOptions(fsck=fsck, use_fuse=not no_fuse), listener)
    fetched = app.accounting.snapshot().bytes_down if app.accounting else None
    if app.settings.json:
        app.emit_json("verify", {**res.to_dict(), "fetched_bytes": fetched})
    else:
        _print(app, res)
    if res.damaged:
        raise typer.Exit(CorruptObject.exit_code)
    if res.status != "clean":
        raise typer.Exit(EXIT_FILESYSTEM_DAMAGED)


def _print(app: AppContext, res) -> None:
    out = app.out
    out.print(f"snapshot {res.snapshot_id[:8]}: {units.size(res.checked_bytes)} read and authenticated, "
              f"{units.size(res.zero_bytes)} zeros, {len(res.damaged)} damaged range(s) "
              f"in {res.duration_s:.1f} s", markup=False)
    for d in res.damaged[:_SHOWN_RANGES]:
        out.print(f"  damaged: bytes {d.offset}..{d.offset + d.length} ({units.size(d.length)}): {d.problem}",
                  markup=False)
    if len(res.damaged) > _SHOWN_RANGES:
        out.print(f"  ... and {len(res.damaged) - _SHOWN_RANGES} more (--json lists every one)")
    for p in res.partitions or ():
        name = "image" if p.number is None else f"p{p.number}"
        label = f" {p.label!r}" if p.label else ""
        if p.status == "not checked":
            app.details.print(f"{name}  {p.filesystem or '-'}{label}: not checked ({p.reason})", markup=False)
            continue
        (out if p.status == "damaged" else app.details).print(
            f"{name}  {p.filesystem}{label}: {p.status.upper() if p.status == 'damaged' else p.status} "
                  f"({p.checker}, exit status {p.exit_status}, via {p.via})", markup=False)
        if p.status == "damaged":
            for line in p.output:
                out.print(f"    {line}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
