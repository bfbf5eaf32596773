"""End to end through each cloud-drive backend: the real CLI, in a subprocess, backs up a GPT disk
twice to a local fake of Google Drive, Dropbox or OneDrive, restores both days with --at byte for
byte, and `check --read-data` finds nothing wrong.

As in test_e2e_backends.py, the program is configured only by a URL and the environment, as a user
would configure it. The one thing a user does by hand, logging in, is done here in-process against
the fake (the token file `agent login` would leave behind); the agent process finds it through
AGENT_<SERVICE>_TOKEN_FILE and gets its access tokens from the fake's OAuth endpoints by itself.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from tests.e2e.cycle import Days, Target, make_days, run_cycle
from tests.servers.dropbox_fake import APP_KEY
from tests.servers.gdrive_fake import FOLDER, ROOT_ID

# msgraph-sdk's generated request builders warn about their own deprecated classes when imported
pytestmark = pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning")







@pytest.fixture(scope="module")
def days(tmp_path_factory) -> Days:
    return make_days(tmp_path_factory.mktemp("disk"), 16)


def gdrive_target(request, tmp: Path) -> Target:
    pytest.importorskip("googleapiclient", reason="pip install 'agent-imagebackup[gdrive]'")
    fake = request.getfixturevalue("gdrive_fake")
    refresh = f"e2e-refresh-{uuid.uuid4().hex}"
    with fake.state.lock:
        fake.state.refresh_tokens.add(refresh)
    token = tmp / "gdrive.json"  # what `agent login gdrive` stores: an authorized-user file
    token.write_text(json.dumps({"token": "stale-access-token", "refresh_token": refresh,
                                 "client_id": "cid.apps.googleusercontent.com", "client_secret": "s",
                                 "token_uri": fake.url + "token"}))
    token.chmod(0o600)
    folder = ("agent-e2e", uuid.uuid4().hex[:12])

    def stored() -> set[str]:
        with fake.state.lock:
            parent = ROOT_ID
            for name in folder:
                found = [f for f in fake.state.children(parent, name) if f["mimeType"] == FOLDER]
                if not found:
                    return set()
                parent = found[0]["id"]
            names, todo = set(), [(parent, "")]
            while todo:
                current, prefix = todo.pop()
                for f in fake.state.children(current):
                    if f["mimeType"] == FOLDER:
                        todo.append((f["id"], f"{prefix}{f['name']}/"))
                    else:
                        names.add(prefix + f["name"])
            return names

    return Target(f"gdrive://{'/'.join(folder)}?endpoint={fake.url}", stored,
                  {"AGENT_GDRIVE_TOKEN_FILE": str(token)})


def dropbox_target(request, tmp: Path) -> Target:
    pytest.importorskip("dropbox", reason="pip install 'agent-imagebackup[dropbox]'")
    from backends.dropbox.auth import save_token

    fake = request.getfixturevalue("dropbox_fake")
    token = tmp / "dropbox.json"  # what `agent login dropbox` stores
    save_token(token, {"app_key": APP_KEY, "refresh_token": fake.new_refresh_token()})
    root = f"/Backups/e2e-{uuid.uuid4().hex[:12]}"

    def stored() -> set[str]:
        prefix = root.lower() + "/"
        with fake._lock:
            return {path[len(prefix):] for path in fake.files if path.startswith(prefix)}

    return Target(f"dropbox://{root}?endpoint={fake.host}&ca={fake.ca}", stored,
                  {"AGENT_DROPBOX_TOKEN_FILE": str(token)})


def onedrive_target(request, tmp: Path) -> Target:
    pytest.importorskip("msgraph", reason="pip install 'agent-imagebackup[onedrive]'")
    import requests

    from backends.onedrive.auth import login

    fake = request.getfixturevalue("onedrive_fake")
    session = requests.Session()
    session.verify = fake.ca_file
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify= in this process

    def approve(message: str) -> None:  # the user typing the code into the browser
        fake.approve(re.search(r"enter the code (\S+)", message)[1])

    token = tmp / "onedrive.json"  # what `agent login onedrive` stores, signed in at the fake's authority
    login(token, fake.client_id, approve, authority=fake.authority, http_client=session)
    folder = f"Backups/e2e-{uuid.uuid4().hex[:12]}"

    def stored() -> set[str]:
        with fake.lock:
            top = fake.drive.resolve(fake.drive.app_folder().id, folder)
            names, todo = set(), [(top, "")] if top is not None else []
            while todo:
                item, prefix = todo.pop()
                for child in fake.drive.children(item):
                    if child.folder:
                        todo.append((child, f"{prefix}{child.name}/"))
                    else:
                        names.add(prefix + child.name)
            return names

    # msal in the agent process builds its own requests session: REQUESTS_CA_BUNDLE makes it trust
    # the fake's sign-in service; Graph itself is plain http on loopback
    return Target(f"onedrive:///{folder}?endpoint={fake.graph_url}", stored,
                  {"AGENT_ONEDRIVE_TOKEN_FILE": str(token), "REQUESTS_CA_BUNDLE": fake.ca_file})


TARGETS = {"gdrive": gdrive_target, "dropbox": dropbox_target, "onedrive": onedrive_target}


@pytest.fixture(params=sorted(TARGETS))
def target(request, tmp_path) -> Target:
    """A fresh, empty folder on one drive's fake (started on first use), and a token file for it."""
    tokens = tmp_path / "tokens"
    tokens.mkdir(mode=0o700)
    return TARGETS[request.param](request, tokens)


def test_backup_twice_and_restore_each_day_at(cli, days, target, tmp_path):
    run_cycle(cli, days, target, tmp_path)
