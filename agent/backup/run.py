"""One backup run: open the source, lock the repository, read and cut the disk, write what is new,
and save the snapshot (or, when the run stops early, a run record the next run resumes from)."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

from agent import __version__
from agent.backup.blocks import BLOCK_SIZE, HEAD_ROOM
from agent.backup.buffers import BufferPool
from agent.backup.guided_cut import GuidedCutter, ParentChunks
from agent.backup.options import BackupOptions, BackupResult
from agent.backup.pipeline import Pipeline
from agent.backup.reader import BUFFERS_PER_STRETCH, StretchReader, split
from agent.backup.suspicion import KEPT_NIGHTS, evaluate, recent_nights
from agent.backup.unchanged import file_state, reusable_parent
from agent.config.stamps import rfc3339
from agent.errors import CorruptObject, SourceError
from agent.progress import Finished, Listener, Started, Warning, ignore
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.runs import RunRecord
from agent.repo.snapshots import Snapshot, filter_snapshots, superseded_runs
from agent.repo.writer import StopRequested, adopt_orphan_packs
from agent.source.device import Source, open_source
from agent.source.partition_model import PartitionTable
from agent.source.partitions import read_partition_table
from agent.source.reading import ReadingPlan, plan_reading

# Read buffers that may exist at once (agent.backup.buffers) for one stretch: reading, cutting, the
# carried tail, hashing and chunks queued for sealing each hold one or two; more only raised the
# peak. Each further stretch adds agent.backup.reader.BUFFERS_PER_STRETCH.
_BUFFERS = 4


def _partition_table(src: Source) -> PartitionTable | None:
    try:
        return read_partition_table(src.read, src.size)
    except OSError:
        return None


def _plan(src: Source, table: PartitionTable | None, opts: BackupOptions, listener: Listener) -> ReadingPlan:
    """What to read; a recognised filesystem that must be read whole is worth a warning (it costs time
    and space, and often means it was not cleanly unmounted)."""
    plan = plan_reading(src.read, src.size, table, all_blocks=opts.all_blocks, keep_pagefile=opts.keep_pagefile,
                        only=opts.partitions or None)
    for p in plan.partitions:
        if p.read == "whole" and p.filesystem and p.reason and p.reason != "--all-blocks":
            where = f"partition {p.number}" if p.number else src.path
            listener(Warning(f"{where} ({p.filesystem}) is read whole, free space included: {p.reason}"))
    return plan


def _parent_chunks(repo: Repository, index: ChunkIndex, parent: Snapshot | None,
                   listener: Listener) -> ParentChunks | None:
    """The parent snapshot's chunks, to cut along where the disk is unchanged (agent.backup.guided_cut)."""
    if parent is None:
        return None
    try:
        return ParentChunks(repo.load_chunk_list(index, parent))
    except CorruptObject as exc:
        listener(Warning(f"not reusing the chunk boundaries of snapshot {parent.id[:8]}: {exc}"))
        return None


def _stop_reason(opts: BackupOptions, deadline_mono: float | None) -> str | None:
    if opts.stop is not None and opts.stop.is_set():
        return "stopped on request"
    if deadline_mono is not None and opts.deadline is not None and time.monotonic() >= deadline_mono:
        return f"deadline {rfc3339(opts.deadline)} reached"
    return None


def _run_record(host: str, src: Source, started: datetime, pipe: Pipeline, reason: str, status: str,
                packs: list[str]) -> RunRecord:
    """What `snapshots --all` shows, and the packs prune must keep until a later run completes."""
    return RunRecord(
        status=status, reason=reason, host=host, source=src.path, started=started.isoformat(),
        stopped=datetime.now(UTC).isoformat(), source_bytes=src.size, done_bytes=pipe.done_bytes,
        new_bytes=pipe.new_bytes, uploaded_bytes=pipe.writer.uploaded_bytes, agent_version=__version__,
        packs=packs)


def _result(snap_id: str | None, src: Source, pipe: Pipeline, t0: float, recovered: int, stopped: str | None,
            resumed: int, plan: ReadingPlan, source_changed: bool = False, suspicious: dict | None = None,
            protected_id: str | None = None) -> BackupResult:
    return BackupResult(suspicious=suspicious, protected_id=protected_id if suspicious else None,
        snapshot_id=snap_id, source=src.path, source_bytes=src.size, read_bytes=pipe.read_bytes,
        zero_bytes=pipe.zero_bytes, new_bytes=pipe.new_bytes, stored_bytes=pipe.writer.stored_bytes,
        chunks=pipe.chunks, new_chunks=pipe.new_chunks, duration_s=round(time.monotonic() - t0, 3),
        warnings=list(src.warnings), recovered_packs=recovered, uploaded_bytes=pipe.writer.uploaded_bytes,
        stopped=stopped, resumed=resumed, source_changed=source_changed, skipped_free_bytes=plan.skip.total,
        reading=plan.to_dict())


def _snapshot_source(src: Source) -> dict:
    source = {"path": src.path, "kind": src.kind, "size": src.size,
              "identity": {k: v for k, v in src.identity.items() if k not in ("st_dev", "st_ino")}}
    state = file_state(src)
    if state is not None:  # an unchanged image file is not read again (agent.backup.unchanged)
        source["state"] = state
    return source


def _reuse(repo: Repository, parent: Snapshot, src: Source, opts: BackupOptions, started: datetime, host: str,
           t0: float) -> BackupResult:
    """A snapshot of an unchanged image file: the parent's chunk list, nothing read or uploaded."""
    reading = dict(parent.reading or {"mode": "all"})
    reading["unchanged_from"] = parent.id
    nights = (recent_nights([parent]) + [0])[-KEPT_NIGHTS:]  # a night without change is a night of the history
    snap = Snapshot(
        time=(opts.time or started).astimezone(UTC), host=host, source=_snapshot_source(src), size=src.size,
        digest=parent.digest, chunk_list=list(parent.chunk_list), tags=sorted(set(opts.tags)), parent=parent.id,
        partition_table=parent.partition_table,
        stats={"source_bytes": src.size, "read_bytes": 0, "zero_bytes": 0, "new_bytes": 0, "stored_bytes": 0,
               "chunks": 0, "new_chunks": 0, "duration_s": round(time.monotonic() - t0, 3), "resumed_runs": [],
               "skipped_free_bytes": parent.stats.get("skipped_free_bytes", 0), "new_stored_bytes": 0,
               "recent_nights": nights},
        agent_version=__version__, reading=reading)
    snap_id = repo.save_snapshot(snap)
    return BackupResult(snapshot_id=snap_id, source=src.path, source_bytes=src.size, read_bytes=0, zero_bytes=0,
                        new_bytes=0, stored_bytes=0, chunks=0, new_chunks=0,
                        duration_s=round(time.monotonic() - t0, 3), warnings=list(src.warnings),
                        skipped_free_bytes=int(parent.stats.get("skipped_free_bytes", 0) or 0),
                        unchanged_from=parent.id, reading=reading)


def unfinished_runs(repo: Repository, snaps: list[Snapshot], host: str, source: str,
                    listener: Listener = ignore) -> list[tuple[str, RunRecord]]:
    """Run records of this host and source that no complete snapshot has taken over yet."""
    done = superseded_runs(snaps)
    damaged: list[str] = []
    runs = repo.list_runs(damaged)
    for name in damaged:
        listener(Warning(f"ignoring damaged run record {name[:8]} (an earlier unfinished run; its uploads are "
                         "reused if their packs are intact; `agent prune` removes the record)"))
    return [(n, r) for n, r in runs if n not in done and r.host == host and r.source == source]


def _record_failure(repo: Repository, record: RunRecord) -> None:
    """Best effort: the run failed, maybe because the storage did; its error is what matters."""
    try:
        repo.save_run(record)
    except Exception:  # noqa: BLE001
        pass


def run_backup(repo: Repository, path: str, opts: BackupOptions | None = None,
               listener: Listener = ignore) -> BackupResult:
    """Back up `path`. Returns an incomplete result (no snapshot) when a deadline or stop request
    ends the run early; everything uploaded by then is indexed and reused by the next run."""
    opts = opts or BackupOptions()
    t0 = time.monotonic()
    started = datetime.now(UTC)
    deadline_mono = None
    if opts.deadline is not None:
        deadline_mono = t0 + (opts.deadline - started).total_seconds()
    host = opts.host or socket.gethostname()
    with open_source(path, direct=opts.direct_io) as src:
        for w in src.warnings:
            listener(Warning(w))
        table = _partition_table(src)
        plan = _plan(src, table, opts, listener)
        with repo.lock(exclusive=False, command="backup", wait=opts.lock_wait) as lock:
            repo.prefetch_listings("index", "damage", "packs", "snapshots", "runs")
            bad_segments: list[tuple[str, str]] = []
            index = repo.load_index(bad_segments)
            for name, problem in bad_segments:  # its packs are re-indexed from their headers just below
                listener(Warning(f"index segment {name[:16]} is damaged and ignored ({problem}); its packs are "
                                 "indexed again from their headers"))
            adopted = adopt_orphan_packs(repo, index, listener)
            damaged: list[tuple[str, str]] = []
            all_snaps = repo.list_snapshots(damaged)
            for name, problem in damaged:  # this backup does not need it: it may only pick another parent
                listener(Warning(f"snapshot {name[:8]} is damaged and ignored: {problem}"))
            earlier = filter_snapshots(all_snaps, host=host, source=src.path)
            resumed = unfinished_runs(repo, all_snaps, host, src.path, listener)
            if resumed:
                kept = sum(r.uploaded_bytes for _, r in resumed)
                listener(Warning(f"resuming {len(resumed)} unfinished run(s) of {src.path} "
                                 f"({resumed[-1][1].reason}): the {kept / (1 << 20):.1f} MiB they uploaded "
                                 "are reused"))
            parent_snap = earlier[-1] if earlier else None
            if not opts.force_read and not resumed and _stop_reason(opts, deadline_mono) is None:
                same = reusable_parent(repo, index, src, parent_snap, plan)
                if same is not None:
                    lock.ensure_valid()
                    res = _reuse(repo, same, src, opts, started, host, t0)
                    listener(Finished("backup"))
                    return res
            listener(Started("backup", src.size))

            def should_stop() -> str | None:
                return _stop_reason(opts, deadline_mono)

            pipe = Pipeline(repo, index, opts, listener, should_stop, before_index=lock.ensure_valid)
            stopped = None
            cdc = repo.new_chunker()
            parent = _parent_chunks(repo, index, earlier[-1] if earlier else None, listener)
            stretches = split(src.size, opts.stretches, opts.stretch_min)
            head = min(repo.params.chunker.max_size, HEAD_ROOM)  # room for a block's uncut tail
            pool = BufferPool(head + BLOCK_SIZE, limit=_BUFFERS + BUFFERS_PER_STRETCH * (len(stretches) - 1))

            def guide() -> GuidedCutter | None:
                return None if parent is None else GuidedCutter(cdc, parent, repo.params.chunker.max_size,
                                                                pipe.hash_many)

            reader = StretchReader(src, stretches, pool, head, cdc, guide, pipe.chunklist, plan.skip)
            try:
                try:
                    for item, records in reader.items(pipe.append_deferred):
                        stopped = should_stop()
                        if stopped:
                            break
                        pipe.feed(item, records)
                    if not stopped:
                        pipe.finish()
                except StopRequested:
                    stopped = should_stop()
                if stopped:
                    pipe.stop_early()
            except BaseException as exc:
                pipe.abort()
                _record_failure(repo, _run_record(host, src, started, pipe, str(exc) or exc.__class__.__name__,
                                                  "failed", adopted + pipe.writer.uploaded_packs))
                raise
            finally:
                pool.close()  # a reader waiting for a buffer must not hold up the stop
                reader.close()
                pipe.close()
            if stopped:
                lock.ensure_valid()
                repo.save_run(_run_record(host, src, started, pipe, stopped, "incomplete",
                                          adopted + pipe.writer.uploaded_packs))
                listener(Finished("backup"))
                return _result(None, src, pipe, t0, len(adopted), stopped, len(resumed), plan)
            if src.current_size() != src.size or not src.same_object():
                raise SourceError(f"{src.path} changed size or was replaced during the backup; no snapshot was written",
                                  hint="back up a snapshot of the volume (LVM, filesystem freeze) or a quiet image")
            changed = src.changed_since_open()
            if changed:  # what was read is kept: often still useful, and the next backup reuses its chunks
                warning = (f"{src.path} changed while it was read (written in place during the backup): the snapshot "
                           "is saved but may be inconsistent; back up a quiet image or a snapshot of the volume")
                src.warnings.append(warning)
                listener(Warning(warning))
            stats = {
                "source_bytes": src.size, "read_bytes": pipe.read_bytes, "zero_bytes": pipe.zero_bytes,
                "new_bytes": pipe.new_bytes, "stored_bytes": pipe.writer.stored_bytes, "chunks": pipe.chunks,
                "new_chunks": pipe.new_chunks, "duration_s": round(time.monotonic() - t0, 3),
                "resumed_runs": [name for name, _ in resumed], "skipped_free_bytes": plan.skip.total,
                "new_stored_bytes": pipe.writer.new_data_sealed,
            }
            when = (opts.time or started).astimezone(UTC)
            before = [s for s in earlier if s.time < when]
            nights = recent_nights(before)
            suspicious = evaluate(nights, pipe.new_bytes, pipe.writer.new_data_raw, pipe.writer.new_data_sealed,
                                  opts.suspicion)
            stats["recent_nights"] = (nights + [pipe.new_bytes])[-KEPT_NIGHTS:] if before else []
            snap = Snapshot(
                time=when,
                host=host,
                source=_snapshot_source(src),
                size=src.size,
                digest=pipe.chunklist.digest(),
                chunk_list=pipe.meta_ids,
                tags=sorted(set(opts.tags)),
                parent=earlier[-1].id if earlier else None,
                partition_table=table.to_dict() if table is not None else None,
                stats=stats,
                agent_version=__version__,
                changed_during_backup=changed,
                reading=plan.to_dict(),
                suspicious=suspicious,
            )
            lock.ensure_valid()
            snap_id = repo.save_snapshot(snap)
    listener(Finished("backup"))
    return _result(snap_id, src, pipe, t0, len(adopted), None, len(resumed), plan, changed, suspicious,
                   before[-1].id if before else None)
