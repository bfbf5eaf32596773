"""Which environment variables hold a secret, by name: hooks never inherit them
(agent.nightly.hooks), and `--debug` never prints their values (agent.cli.redaction).

By name, because the storage SDKs read credentials from the environment under names the agent
does not choose, and admins' own secrets follow the same conventions. The backends' own secret
variables (backends.env.SECRETS: AGENT_SFTP_PASSWORD, ...) end in one of the suffixes; a test
keeps it so, as agent.config cannot import backends.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import env

#: credentials the storage SDKs (and the Terraform providers of terraform/) read, whatever the suffix
SDK_SECRETS = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "GOOGLE_CREDENTIALS", "GOOGLE_CLOUD_KEYFILE_JSON", "GCLOUD_KEYFILE_JSON", "GOOGLE_OAUTH_ACCESS_TOKEN",
    "GOOGLE_API_KEY",
})
SUFFIXES = ("_PASSWORD", "_PASSPHRASE", "_SECRET", "_TOKEN", "_SECRET_ACCESS_KEY", "_SECRET_KEY", "_API_KEY")


def is_secret(name: str) -> bool:
    """True for a variable whose value is a secret itself (not a path to one: *_FILE names stay)."""
    upper = name.upper()
    return name in env.SECRETS or upper in SDK_SECRETS or upper.endswith(SUFFIXES)


@dataclass(frozen=True)
class Secret:
    """Marks a config field that holds a credential (`Annotated[str, Secret()]`), so `config show` and
    every other printout derive what to hide from the model itself instead of a list kept beside it.

    kind: "value" (show only that it is set), "url" (scheme and host; the path and query of a chat
    webhook or ping URL are its token), "scheme" (Apprise URLs carry tokens even in the host part),
    "location" (a repository: the path stays, the password and secret query values go).
    """

    kind: str = "value"
