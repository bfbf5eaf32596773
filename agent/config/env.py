"""The agent's environment variables, by name: one place to grep, document and keep consistent.

Storage backends read their own (AGENT_SFTP_*, AGENT_SMB_PASSWORD, AGENT_GDRIVE_*, ...): they
are named in `backends.env`, since backends import nothing from the agent.
"""

from __future__ import annotations

# repository and secrets (flags win over these; these win over agent.toml)
REPO = "AGENT_REPO"
PASSPHRASE = "AGENT_PASSPHRASE"
PASSPHRASE_FILE = "AGENT_PASSPHRASE_FILE"
PASSPHRASE_COMMAND = "AGENT_PASSPHRASE_COMMAND"
NEW_PASSPHRASE = "AGENT_NEW_PASSPHRASE"
NEW_PASSPHRASE_FILE = "AGENT_NEW_PASSPHRASE_FILE"
# the other repository of `agent copy` (target) and `agent init --from-repo` (source), same forms
TO_REPO = "AGENT_TO_REPO"
TO_PASSPHRASE = "AGENT_TO_PASSPHRASE"
TO_PASSPHRASE_FILE = "AGENT_TO_PASSPHRASE_FILE"
TO_PASSPHRASE_COMMAND = "AGENT_TO_PASSPHRASE_COMMAND"
FROM_PASSPHRASE = "AGENT_FROM_PASSPHRASE"
FROM_PASSPHRASE_FILE = "AGENT_FROM_PASSPHRASE_FILE"
FROM_PASSPHRASE_COMMAND = "AGENT_FROM_PASSPHRASE_COMMAND"
KDF = "AGENT_KDF"  # Argon2id cost of new key files: time,memory_kib,parallelism

# traffic and output
LIMIT_UPLOAD = "AGENT_LIMIT_UPLOAD"
LIMIT_DOWNLOAD = "AGENT_LIMIT_DOWNLOAD"
PROGRESS_INTERVAL = "AGENT_PROGRESS_INTERVAL"

# where things live
CONFIG = "AGENT_CONFIG"
CACHE_DIR = "AGENT_CACHE_DIR"
STATE_DIR = "AGENT_STATE_DIR"
SCHEDULE_ROOT = "AGENT_SCHEDULE_ROOT"  # tests: install schedules under this root instead of /
SYSLOG_SOCKET = "AGENT_SYSLOG_SOCKET"  # tests: the syslog socket instead of /dev/log

# cloud drive logins (`agent login`; the OneDrive client id is read by its backend, backends.env)
GDRIVE_CLIENT_SECRETS = "AGENT_GDRIVE_CLIENT_SECRETS"
DROPBOX_APP_KEY = "AGENT_DROPBOX_APP_KEY"

# set for pre/post hooks of `agent run`
HOOK = "AGENT_HOOK"
SOURCE_NAME = "AGENT_SOURCE_NAME"
SOURCE_PATH = "AGENT_SOURCE_PATH"
STATUS = "AGENT_STATUS"

#: never passed on to hooks, whatever the configuration says
SECRETS = (PASSPHRASE, NEW_PASSPHRASE, TO_PASSPHRASE, FROM_PASSPHRASE)
#: for the test suite only, so not in the user documentation
TEST_ONLY = (SCHEDULE_ROOT, SYSLOG_SOCKET)
