"""Environment variables the storage backends read, by name: credentials that must not go into a
repository URL (and so into argv or logs), and where the drives' login tokens are kept.

The agent's own variables are in agent.config.env; these live here because backends import
nothing from the agent.
"""

from __future__ import annotations

SFTP_KEY_FILE = "AGENT_SFTP_KEY_FILE"
SFTP_KEY_PASSPHRASE = "AGENT_SFTP_KEY_PASSPHRASE"
SFTP_PASSWORD = "AGENT_SFTP_PASSWORD"
SFTP_KNOWN_HOSTS = "AGENT_SFTP_KNOWN_HOSTS"
SMB_PASSWORD = "AGENT_SMB_PASSWORD"
GDRIVE_SCOPE = "AGENT_GDRIVE_SCOPE"
GDRIVE_SERVICE_ACCOUNT = "AGENT_GDRIVE_SERVICE_ACCOUNT"
GDRIVE_SUBJECT = "AGENT_GDRIVE_SUBJECT"
ONEDRIVE_CLIENT_ID = "AGENT_ONEDRIVE_CLIENT_ID"

#: the ones above that hold a secret itself (not a path to one): hooks never see them, and the
#: agent's name rule (agent.config.secrets) must match each (tests/config/test_env_names.py)
SECRETS = (SFTP_PASSWORD, SFTP_KEY_PASSPHRASE, SMB_PASSWORD)


def token_file(service: str) -> str:
    """AGENT_<SERVICE>_TOKEN_FILE: where `agent login SERVICE` keeps its token (backends.oauth_tokens)."""
    return f"AGENT_{service.upper()}_TOKEN_FILE"
