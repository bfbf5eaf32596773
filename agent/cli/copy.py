"""`agent copy`: copy snapshots to another repository (off-site), uploading only what it lacks."""

from __future__ import annotations

from typing import List, Optional

import typer

from agent.cli.backup import LIMIT_HELP
from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import units
from agent.config.durations import UNITS_HELP

TO_PASSPHRASE_FILE_HELP = ("Read the target repository's passphrase from this file. Env: AGENT_TO_PASSPHRASE_FILE "
                           "(or AGENT_TO_PASSPHRASE_COMMAND, AGENT_TO_PASSPHRASE); else prompt.")


def copy(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    snapshot_ids: Optional[List[str]] = typer.Argument(None, help="Snapshot ids (or prefixes) to copy; default: "
                                                        "every snapshot the filters select."),
    to_repo: Optional[str] = typer.Option(None, "--to-repo", help="The target repository's URL or path. "
                                          "Env: AGENT_TO_REPO."),
    to_passphrase_file: Optional[str] = typer.Option(None, "--to-passphrase-file", help=TO_PASSPHRASE_FILE_HELP),
    to_passphrase_command: Optional[str] = typer.Option(None, "--to-passphrase-command", help="Run this command "
                                                        "and read the target's passphrase from its output. "
                                                        "Env: AGENT_TO_PASSPHRASE_COMMAND."),
    host: Optional[str] = typer.Option(None, "--host", help="Only snapshots of this host."),
    source: Optional[str] = typer.Option(None, "--source", help="Only snapshots of this source path."),
    tag: List[str] = typer.Option([], "--tag", help="Only snapshots with this tag (repeatable: all of them)."),
    at: Optional[str] = typer.Option(None, "--at", help="Only the newest snapshot at or before this time, per "
                                     "host and source: a date (end of that day) or a date and time."),
    lock_wait: int = typer.Option(1800, "--lock-wait", help="Seconds to wait for a running prune (either side)."),
    limit_upload: Optional[str] = typer.Option(None, "--limit-upload", help=LIMIT_HELP + " Applies to the "
                                               "target. Env: AGENT_LIMIT_UPLOAD."),
    limit_download: Optional[str] = typer.Option(None, "--limit-download", help="Download limit on the source, "
                                                 "same forms."),
    stop_at: Optional[str] = typer.Option(None, "--stop-at", help="Stop cleanly at this local time (HH:MM); "
                                          "the next run resumes. Exit status 3."),
    max_duration: Optional[str] = typer.Option(None, "--max-duration", help="Stop cleanly after this long "
                                               "(5h, 90m, 1d); the next run resumes. Exit status 3. " + UNITS_HELP),
) -> None:
    """Copy snapshots from --repo to --to-repo; only chunks the target lacks are read and uploaded."""
    from agent.cli.stopping import graceful_stop
    from agent.config.settings import copy_target
    from agent.config.times import parse_instant, run_deadline

    app: AppContext = app_context(ctx, json_output)
    target = copy_target(to_repo, to_passphrase_file, to_passphrase_command)
    if limit_download:
        app.settings.limit_download = limit_download
    upload = limit_upload or app.settings.limit_upload
    app.settings.limit_upload = None  # the source only downloads (and writes a lock)
    when, deadline = parse_instant(at) if at else None, run_deadline(stop_at, max_duration)
    with graceful_stop() as stop, app.repository() as src, \
            app.other_repository(target, limit_upload=upload) as dst, app.progress("copy") as listener:
        from agent.copy.options import CopyOptions  # after both key derivations: agent.repo.keyring
        from agent.copy.run import run_copy

        opts = CopyOptions(ids=list(snapshot_ids or []), host=host, source=source, tags=list(tag), at=when,
                           lock_wait=lock_wait, deadline=deadline, stop=stop)
        res = run_copy(src, dst, opts, listener)
    report_copy(app, res, target_location=dst.location)
    if not res.complete:
        raise typer.Exit(3)


def report_copy(app: AppContext, res, *, target_location: str) -> None:
    if app.settings.json:
        app.emit_json("copy", res.summary())
        return
    n, skipped = len(res.copied), len(res.skipped)
    if res.complete:
        app.out.print(f"copied {n} snapshot(s) to {target_location}, {skipped} already there")
        app.log_summary(f"copy to {target_location}: {n} copied, {skipped} already there, "
                        f"uploaded {units.size(res.uploaded_bytes)}")
    else:
        app.out.print(f"copy to {target_location} INCOMPLETE: {res.stopped}; {n} snapshot(s) copied. Everything "
                      "uploaded so far is kept and the next run resumes from it.")
        app.log_summary(f"copy to {target_location} incomplete: {res.stopped}; the next run resumes", error=True)
    for src_id, dst_id in res.copied:
        app.details.print(f"  {src_id[:8]} -> {dst_id[:8]}")
    how = "sealed blobs and packs as they are" if res.mode == "replica" else "opened and sealed again"
    app.details.print(f"  read {units.size(res.read_bytes)}, uploaded {units.size(res.uploaded_bytes)} in "
                      f"{res.uploaded_packs} pack(s) ({how}), {units.duration(res.duration_s)}")
    if res.recovered_packs:
        app.details.print(f"  resumed: reused {res.recovered_packs} pack(s) an interrupted run left")


def register(app: typer.Typer) -> None:
    app.command("copy")(copy)
