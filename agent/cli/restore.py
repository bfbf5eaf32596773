"""`agent restore`: write a snapshot to an image file or a disk."""

from __future__ import annotations

from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import stamps, units
from agent.config.durations import UNITS_HELP


def restore(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    snapshot: Optional[str] = typer.Argument(None, help="Snapshot id (unique prefix) or 'latest'."),
    to: str = typer.Option(..., "--to", help="Target image file or block device."),
    at: Optional[str] = typer.Option(None, "--at", help="Newest snapshot at or before this time: a date (end of "
                                     "that day, local time), a timestamp, or yesterday / 3d / 12h."),
    host: Optional[str] = typer.Option(None, "--host", help="Choose among the snapshots of this host."),
    source: Optional[str] = typer.Option(None, "--source", help="Choose among the snapshots of this source path."),
    force: bool = typer.Option(False, "--force", help="Overwrite a target that already holds data."),
    ignore_errors: bool = typer.Option(False, "--ignore-errors", help="Write zeros where data is damaged and list "
                                       "those ranges, instead of stopping."),
    sync: bool = typer.Option(False, "--sync", help="Flush an image file to disk before exiting (disks always are)."),
    partition: Optional[str] = typer.Option(None, "--partition", "-p", help="Restore only this partition (number, "
                                            "filesystem label or GPT name), fetching only its range."),
    limit_download: Optional[str] = typer.Option(None, "--limit-download", help="Bandwidth limit: 4MiB/s, "
                                                 "20Mbit/s, off, or a timetable. Env: AGENT_LIMIT_DOWNLOAD."),
    size: Optional[str] = typer.Option(None, "--size", help="Size of the disk to create in an image file (e.g. "
                                       "128MiB), larger or smaller than the snapshot's; the GPT is fitted to it. "
                                       "Default: the image's size, or that of a larger existing file holding no "
                                       "data. " + UNITS_HELP),
    grow: bool = typer.Option(False, "--grow", help="Extend the last partition to the end of the disk and grow "
                              "its filesystem (ext2/3/4; NTFS and XFS as root)."),
    image_format: Optional[str] = typer.Option(None, "--format", help="raw, qcow2, vhdx or vmdk (qemu-img). "
                                               "Default: from the target's extension, else raw."),
    delta: bool = typer.Option(False, "--delta", help="The target holds an older copy: compare it chunk by chunk "
                               "and fetch and write only what differs (no --force needed)."),
    compare_all: bool = typer.Option(False, "--compare-all", help="With --delta: read and compare the whole target "
                                     "even when its stamp says it is an unchanged earlier restore."),
    seed: list[str] = typer.Option([], "--seed", help="A local image (older restore, copy of the old disk) to copy "
                                   "matching chunks from instead of fetching them (on XFS and btrfs, its blocks "
                                   "are shared instead); repeatable."),
) -> None:
    """Restore a snapshot (by id, 'latest', or --at) to --to."""
    from agent.config.times import parse_instant
    from agent.errors import UsageError

    app: AppContext = app_context(ctx, json_output)
    if snapshot and at:
        raise UsageError("give a snapshot id or --at, not both")
    if partition is not None and (size is not None or grow or image_format is not None):
        raise UsageError("--size, --grow and --format apply to a whole disk, not to --partition")
    if compare_all and not delta:
        raise UsageError("--compare-all applies to --delta only")
    if (delta or seed) and (size is not None or (image_format or "raw") != "raw"):
        raise UsageError("--delta and --seed write a raw image in place: not with --size or --format")
    from agent.config.sizes import parse_size

    disk_size = parse_size(size, what="--size") if size is not None else None
    if disk_size is not None and disk_size <= 0:
        raise UsageError(f"--size {size} is not a size a disk can have")
    app.set_limits(None, limit_download)
    with app.repository() as repo:
        from agent.repo.snapshots import filter_snapshots, pick_at, resolve  # after the key derivation
        from agent.restore.run import RestoreOptions, run_restore

        damaged: list[tuple[str, str]] = []
        snaps = filter_snapshots(repo.list_snapshots(damaged), host=host, source=source)
        for name, problem in damaged:  # the others restore; say which one cannot be chosen
            if snapshot and snapshot != "latest" and name.startswith(snapshot.lower()):
                from agent.errors import CorruptObject

                raise CorruptObject(f"snapshot {name[:8]} cannot be restored: its manifest is damaged ({problem})",
                                    hint="another snapshot may hold the same data (`agent snapshots`); "
                                         "`agent repair snapshots` removes the damaged manifest")
            app.warn(f"snapshot {name[:8]} is not listed: {problem}")
        snap = (pick_at(snaps, parse_instant(at), local_host=app.local_host) if at
                else resolve(snaps, snapshot or "latest", local_host=app.local_host))
        if snap.changed_during_backup:
            app.warn(f"snapshot {snap.id[:8]} was taken while its source was being written: the image may be "
                     "inconsistent (check its filesystems after the restore)")
        window, what = None, ""
        if partition is not None:
            from agent.repo.snapshots import pick_partition

            part = pick_partition(snap, partition)
            window, what = (int(part["start"]), int(part["size"])), f"partition {part['number']} of "
        app.info(f"restoring {what}snapshot {snap.id[:8]} of {snap.host}:{snap.source_path} from "
                 f"{stamps.human(snap.time)} to {to}")
        opts = RestoreOptions(force=force, ignore_errors=ignore_errors, sync=sync, window=window, delta=delta,
                              seeds=list(seed), journal_dir=repo.cache.root, compare_all=compare_all)
        placed = None
        with app.progress("restore") as listener:
            if window is not None:
                res = run_restore(repo, snap, to, opts, listener)
            else:
                from agent.restore.anywhere import Placement, restore_anywhere

                if delta:  # a smaller disk is not rolled forward into a shrunk image
                    from agent.restore.target import probe_target

                    kind, have = probe_target(to)
                    if kind != "missing" and have < snap.size:
                        from agent.errors import TargetError

                        raise TargetError(f"{to} holds {have} bytes, fewer than the image ({snap.size}); "
                                          f"choose a larger {'disk' if kind == 'block' else 'target'}")

                placed = restore_anywhere(repo, snap, to, opts, Placement(disk_size, grow, image_format), listener)
                res = placed.result
    fetched = app.accounting.snapshot().bytes_down if app.accounting else None
    if app.settings.json:
        app.emit_json("restore", {"snapshot_id": res.snapshot_id, "target": to if placed else res.target,
                                  "size": res.size,
                       "partition": int(part["number"]) if partition is not None else None,
                       "written_bytes": res.written_bytes, "zero_bytes": res.zero_bytes, "fetched_bytes": fetched,
                       "duration_s": res.duration_s, "damaged_ranges": [list(r) for r in res.damaged],
                       "disk_size": placed.disk_size if placed else res.size, "format": placed.format if placed
                       else "raw", "gpt_moved": bool(placed and placed.gpt_moved),
                       "grown_partition": placed.grown_partition if placed else None,
                       "filesystem_grown": placed.filesystem_grown if placed else None,
                       "reused_bytes": res.reused_bytes, "resumed_bytes": res.resumed_bytes,
                       "seeded": [{"seed": path, "bytes": n} for path, n in res.seeded],
                       "verified_bytes": res.verified_bytes, "reads_in_flight": res.reads_in_flight,
                       "held_snapshot": res.held_snapshot, "shared_bytes": res.shared_bytes,
                       "direct_bytes": res.direct_bytes, "processes": res.processes})
    else:
        app.out.print(f"restored {units.size(res.size)} to {to if placed else res.target} in {res.duration_s:.1f} s "
                      f"({units.size(res.written_bytes)} written, {units.size(res.zero_bytes)} zeros as holes)")
        if res.resumed_bytes:
            app.details.print(f"resumed: {units.size(res.resumed_bytes)} were written by the interrupted run")
        if res.held_snapshot:
            app.details.print(f"delta: {to} held snapshot {res.held_snapshot[:8]}, unchanged since it was restored "
                              "(its stamp): the snapshots were compared instead of reading it (--compare-all reads it)")
        if delta:
            app.details.print(f"delta: {units.size(res.reused_bytes)} were already right")
        for path, n in res.seeded:
            app.details.print(f"seed {path} supplied {units.size(n)}")
        if res.shared_bytes:
            app.details.print(f"seed: {units.size(res.shared_bytes)} share the seed's blocks (reflinks): neither "
                              "written nor taking space until one of the files changes there")
        if res.verified_bytes:
            app.details.print(f"verified: read back {units.size(res.verified_bytes)} written by this run")
        elif (delta or res.seeded) and res.written_bytes:
            app.details.print("verified: each chunk by its id before it was written (--sync also reads the image "
                              "back from the disk)")
        if res.damaged:
            app.out.print(f"[red]{len(res.damaged)} damaged range(s) were written as zeros:[/]")
            for off, n in res.damaged:
                app.out.print(f"  bytes {off}..{off + n}")
        if placed:
            _print_placement(app, placed, to)
    if placed:
        for note in placed.notes if placed.filesystem_grown is False else ():
            app.warn(note)
    if res.damaged or (placed and placed.filesystem_grown is False):
        raise typer.Exit(3)


def _print_placement(app: AppContext, placed, to: str) -> None:
    """What was done beyond writing the image's bytes: the GPT, the grown partition, the format."""
    if placed.disk_size != placed.result.size or placed.gpt_moved:
        moved = "; backup GPT moved to its end (sgdisk -v: no problems)" if placed.gpt_moved else ""
        app.details.print(f"disk size {units.size(placed.disk_size)}{moved}")
    if placed.grown_partition is not None:
        old, new = placed.partition_size
        app.details.print(f"partition {placed.grown_partition} extended from {units.size(old)} to {units.size(new)}")
        if placed.filesystem_grown:
            app.details.print(placed.notes[-1])
    if placed.format != "raw":
        app.details.print(f"written as a {placed.format} image with qemu-img (qemu-img check: no errors)")


def register(app: typer.Typer) -> None:
    app.command("restore")(restore)
