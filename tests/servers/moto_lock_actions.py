"""moto_server, authorizing Object Lock requests under the IAM actions AWS uses.

moto 5.2 authorizes `PUT ?retention` as s3:PutObject, `GET ?retention` as s3:GetObject and
`GET ?object-lock` as s3:ListBucket, so a policy that allows PutObject but denies
PutObjectRetention (the backup principal's, terraform/) is not enforced. This entry point adds
AWS's action names to moto's table of subresources, then runs the stock server: the requests,
the storage and every other check are moto's own. Run as `python -m tests.servers.moto_lock_actions
-H HOST -p PORT`.
"""

from __future__ import annotations

import sys


def main() -> None:
    from moto.s3 import responses
    from moto.server import main as moto_main

    actions = responses.ACTION_MAP
    actions["KEY"]["PUT"].update({"retention": "PutObjectRetention", "legal-hold": "PutObjectLegalHold"})
    actions["KEY"]["GET"].update({"retention": "GetObjectRetention", "legal-hold": "GetObjectLegalHold"})
    actions["BUCKET"]["GET"]["object-lock"] = "GetBucketObjectLockConfiguration"
    actions["BUCKET"]["PUT"]["object-lock"] = "PutBucketObjectLockConfiguration"
    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
