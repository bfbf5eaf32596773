"""User-facing error tree. Each class carries an exit code (table in docs/errors.md) and a message
that says what happened and what to do. Messages never contain secrets."""

from __future__ import annotations

#: exit status of `agent backup` when it saved a snapshot of an image file that was written while it
#: was read (not an error: the snapshot exists, but may be inconsistent; docs/errors.md)
EXIT_SOURCE_CHANGED = 4
#: exit status of `agent verify --fsck` when every chunk is sound but a filesystem's own checker
#: found the filesystem damaged: the disk was already inconsistent when it was backed up
EXIT_FILESYSTEM_DAMAGED = 5
#: exit status of `agent backup` when it saved a snapshot of a suspicious night: new data far above the
#: source's usual and mostly incompressible (docs/suspicious-nights.md)
EXIT_SUSPICIOUS = 7


class AgentError(Exception):
    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class UsageError(AgentError):
    exit_code = 2


class RepositoryNotFound(AgentError):
    exit_code = 10
    hint = "check --repo / AGENT_REPO, or create one with `agent init`"


class RepositoryExists(AgentError):
    exit_code = 10
    hint = "use the existing repository, or choose another location"


class WrongPassphrase(AgentError):
    exit_code = 11
    hint = "check AGENT_PASSPHRASE / AGENT_PASSPHRASE_FILE / AGENT_PASSPHRASE_COMMAND"


class UnsupportedFormat(AgentError):
    exit_code = 12


class RepositoryLocked(AgentError):
    exit_code = 13
    hint = "wait for the other run to finish; `agent unlock` removes stale locks"


class CorruptObject(AgentError):
    """Stored data failed authentication, or is truncated or missing."""

    exit_code = 14
    hint = "run `agent check --read-data` to find every damaged object and the snapshots it affects"


class SourceError(AgentError):
    """The device or image to back up is missing, unreadable, or changed while being read."""

    exit_code = 15


class TargetError(AgentError):
    """The restore target is missing, too small, mounted, or not writable."""

    exit_code = 16


class StorageError(AgentError):
    """The backend failed permanently (permissions, quota, configuration)."""

    exit_code = 17


class SnapshotNotFound(AgentError):
    exit_code = 18
    hint = "list snapshots with `agent snapshots`"


class FilesystemError(AgentError):
    """A partition whose filesystem cannot be browsed in place (unknown, damaged or encrypted)."""

    exit_code = 19
    hint = "restore the partition with `agent restore --partition` and open it with its own tools"


class Interrupted(AgentError):
    exit_code = 130
