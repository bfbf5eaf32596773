"""`agent backup`: back up a disk, partition or image file."""

from __future__ import annotations

from typing import List, Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import units
from agent.config.durations import UNITS_HELP

LIMIT_HELP = "Bandwidth limit: 4MiB/s, 20Mbit/s, off, or a timetable '08:00-18:00=1MiB/s,18:00-08:00=off'."


def backup(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    source: Optional[str] = typer.Argument(None, help="Block device (/dev/sda) or image file (or --system)."),
    tag: List[str] = typer.Option([], "--tag", help="Tag for the snapshot (repeatable)."),
    host: Optional[str] = typer.Option(None, "--host", help="Record this host name instead of the machine's."),
    time: Optional[str] = typer.Option(None, "--time", help="Record the snapshot under this time (imports, tests)."),
    lock_wait: int = typer.Option(1800, "--lock-wait", help="Seconds to wait for a running prune to finish."),
    limit_upload: Optional[str] = typer.Option(None, "--limit-upload", help=LIMIT_HELP + " Env: AGENT_LIMIT_UPLOAD."),
    limit_download: Optional[str] = typer.Option(None, "--limit-download", help="Download limit, same forms."),
    stop_at: Optional[str] = typer.Option(None, "--stop-at", help="Stop cleanly at this local time (HH:MM); "
                                          "the next run resumes. Exit status 3."),
    max_duration: Optional[str] = typer.Option(None, "--max-duration", help="Stop cleanly after this long "
                                               "(5h, 90m, 1d); the next run resumes. Exit status 3. " + UNITS_HELP),
    direct_io: bool = typer.Option(True, "--direct-io/--no-direct-io",
                                   help="Read the source with O_DIRECT, past the page cache (faster on a cold "
                                   "disk, and the server's cache is not evicted). --no-direct-io reads through "
                                   "the cache: faster for an image that is already in memory."),
    all_blocks: bool = typer.Option(False, "--all-blocks", help="Read and store free space too (forensics, "
                                    "undelete). By default only blocks the filesystems use are stored; free "
                                    "space restores as zeros."),
    keep_pagefile: bool = typer.Option(False, "--keep-pagefile", help="Store NTFS pagefile.sys, hiberfil.sys and "
                                       "swapfile.sys (by default their contents count as free space)."),
    partitions: Optional[str] = typer.Option(None, "--partitions", help="Back up only these partitions (numbers, "
                                             "labels or GPT names, comma-separated), plus the partition table "
                                             "and boot loader gaps."),
    system: bool = typer.Option(False, "--system", help="Back up the disk holding the running system: its /, "
                                "/boot, EFI system and BIOS boot partitions."),
    force_read: bool = typer.Option(False, "--force-read", help="Read an image file even when it is unchanged "
                                    "since the last snapshot (device, inode, size and times)."),
    suspicious_factor: Optional[float] = typer.Option(None, "--suspicious-factor", min=1.0, help="Flag the night "
                                                      "suspicious when its new data is above this many times the "
                                                      "source's usual (default 5) ..."),
    suspicious_min_new: Optional[str] = typer.Option(None, "--suspicious-min-new", help="... and above this much "
                                                     "(default 256MiB) ... " + UNITS_HELP),
    suspicious_min_ratio: Optional[float] = typer.Option(None, "--suspicious-min-ratio", min=0.0, max=1.0,
                                                         help="... and at least this share of it is left after "
                                                         "compression (default 0.6): mostly incompressible."),
    suspicious_min_history: Optional[int] = typer.Option(None, "--suspicious-min-history", min=1,
                                                         help="Earlier nights needed before a night is judged "
                                                         "(default 3)."),
) -> None:
    """Back up SOURCE; only chunks the repository lacks are uploaded, and only blocks in use are read."""
    from agent.cli.stopping import graceful_stop
    from agent.config.times import parse_instant, run_deadline

    app: AppContext = app_context(ctx, json_output)
    source, chosen = _what_to_read(app, source, partitions, system)
    app.set_limits(limit_upload, limit_download)
    when, deadline = parse_instant(time) if time else None, run_deadline(stop_at, max_duration)
    with graceful_stop() as stop, app.repository() as repo, app.progress("backup") as listener:
        from agent.backup.run import BackupOptions, run_backup  # after the key derivation: agent.repo.keyring

        opts = BackupOptions(tags=list(tag), host=host or (app.config_file and app.config_file.host) or None,
                             time=when, lock_wait=lock_wait, deadline=deadline, stop=stop,
                             direct_io=direct_io, all_blocks=all_blocks, keep_pagefile=keep_pagefile,
                             partitions=chosen, force_read=force_read,
                             suspicion=_thresholds(app, source, suspicious_factor, suspicious_min_new,
                                                   suspicious_min_ratio, suspicious_min_history))
        res = run_backup(repo, source, opts, listener)
    report_backup(app, res)
    if not res.complete:
        raise typer.Exit(3)
    if res.source_changed:
        from agent.errors import EXIT_SOURCE_CHANGED

        raise typer.Exit(EXIT_SOURCE_CHANGED)
    if res.suspicious:
        from agent.errors import EXIT_SUSPICIOUS

        raise typer.Exit(EXIT_SUSPICIOUS)


def _thresholds(app: AppContext, source: str, factor: float | None, min_new: str | None, min_ratio: float | None,
                min_history: int | None):
    """The flags over the config file's thresholds for this source (its `[[sources]]` entry by path, else
    `[suspicion]`) over the defaults."""
    from agent.backup.suspicion import Thresholds
    from agent.config.sizes import parse_size

    cfg = app.config_file
    base = Thresholds()
    if cfg is not None:
        match = [s for s in cfg.sources if s.path == source]
        base = cfg.thresholds_for(match[0]) if match else cfg.suspicion.thresholds()
    return base.override(factor=factor, min_ratio=min_ratio, min_history=min_history,
                         min_new_bytes=None if min_new is None else parse_size(min_new, what="--suspicious-min-new"))


def _what_to_read(app: AppContext, source: str | None, partitions: str | None,
                  system: bool) -> tuple[str, list[str]]:
    """The source and the partitions to keep, from SOURCE/--partitions or --system."""
    from agent.errors import UsageError

    chosen = [p.strip() for p in (partitions or "").split(",") if p.strip()]
    if not system:
        if source is None:
            raise UsageError("name the disk or image file to back up (or --system)")
        return source, chosen
    if source is not None or chosen:
        raise UsageError("--system picks the disk and its partitions itself: give no SOURCE or --partitions")
    from agent.source.system import find_system

    found = find_system()
    if not app.settings.json:
        app.details.print(f"system disk {found.path}: " + "; ".join(found.found))
    return found.path, found.partitions


def backup_summary(res) -> dict:
    return {
        "complete": res.complete, "stopped": res.stopped,
        "snapshot_id": res.snapshot_id, "source": res.source, "source_bytes": res.source_bytes,
        "read_bytes": res.read_bytes, "zero_bytes": res.zero_bytes, "new_bytes": res.new_bytes,
        "stored_bytes": res.stored_bytes, "uploaded_bytes": res.uploaded_bytes, "chunks": res.chunks,
        "new_chunks": res.new_chunks, "duration_s": res.duration_s, "recovered_packs": res.recovered_packs,
        "resumed_runs": res.resumed, "warnings": res.warnings, "changed_during_backup": res.source_changed,
        "skipped_free_bytes": res.skipped_free_bytes, "unchanged_from": res.unchanged_from,
        "reading": res.reading, "suspicious": res.suspicious, "protected_snapshot": res.protected_id,
    }


def report_backup(app: AppContext, res) -> None:
    """Print (or emit as JSON) one backup's outcome."""
    if app.settings.json:
        app.emit_json("backup", backup_summary(res))
        return
    if res.complete:
        # not "dedup": on a first backup the ratio is zeros, compression and repeats within the image
        ratio = f"stored at 1/{res.dedup_ratio:.1f} of the image size" if res.stored_bytes else "nothing new"
        app.out.print(f"snapshot {res.snapshot_id[:8]} saved: {res.source}"
                      + (" [bold red](source changed while it was read: may be inconsistent)[/]"
                         if res.source_changed else ""))
        app.log_summary(f"backup of {res.source} saved snapshot {res.snapshot_id[:8]}: "
                        f"new {units.size(res.new_bytes)}, {res.duration_s:.0f} s")
    else:
        ratio = "incomplete"
        app.out.print(f"backup of {res.source} INCOMPLETE: {res.stopped}; no snapshot was written. Everything "
                      "uploaded so far is kept and the next run resumes from it.")
        app.log_summary(f"backup of {res.source} incomplete: {res.stopped}; the next run resumes", error=True)
    if res.unchanged_from:
        app.details.print(f"  {res.source} is unchanged since snapshot {res.unchanged_from[:8]} (same inode, size "
                          "and times): nothing read, its chunk list reused (--force-read reads it anyway)")
    app.details.print(f"  size {units.size(res.source_bytes)}, read {units.size(res.read_bytes)} "
                      f"({units.size(res.zero_bytes)} zeros and holes skipped)")
    if res.skipped_free_bytes and not res.unchanged_from:
        app.details.print(f"  not stored: {skipped_line(res.reading)}")
    app.details.print(f"  new {units.size(res.new_bytes)} in {res.new_chunks} of {res.chunks} chunks, uploaded "
                      f"{units.size(res.uploaded_bytes)} after compression and encryption ({ratio})")
    rate = units.rate(res.read_bytes + res.zero_bytes, res.duration_s)
    app.details.print(f"  {units.duration(res.duration_s)}, {rate}")
    if res.suspicious:
        from agent.backup.suspicion import describe

        kept = f"snapshot {res.protected_id[:8]} (the last before it)" if res.protected_id else "it"
        app.warn(f"SUSPICIOUS night for {res.source}: {describe(res.suspicious)}. Possible ransomware or mass "
                 f"encryption: look at the source. {kept} is kept from forget until `agent ack "
                 f"{res.snapshot_id[:8]}`")
    if res.recovered_packs or res.resumed:
        app.details.print(f"  resumed: reused {res.recovered_packs} pack(s) left unindexed and the uploads of "
                          f"{res.resumed} earlier incomplete run(s)")


def skipped_line(reading: dict) -> str:
    """What was left out and why: "1.2 GiB free space (ext4 p2, ntfs p3), 2.0 GiB swap (p4)"."""
    kinds: dict[str, tuple[int, list[str]]] = {}
    for p in reading.get("partitions", []):
        if not p.get("free_bytes"):
            continue
        what = {"header": "swap", "skipped": "partitions left out"}.get(p.get("read", ""), "free space")
        total, names = kinds.get(what, (0, []))
        name = f"{p.get('filesystem') or 'p'}" + (f" p{p['number']}" if p.get("number") else "")
        kinds[what] = (total + int(p["free_bytes"]), names + [name])
    return ", ".join(f"{units.size(total)} {what} ({', '.join(names)})" for what, (total, names) in kinds.items())


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
