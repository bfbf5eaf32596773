# Two principals with a split of rights:
# - backup: reads and writes the repository, deletes only its own lock records under locks/, and
#   cannot delete anything else, delete versions, bypass or change retention, or reconfigure the bucket;
# - maintenance (prune, key removal, agent retain): may also delete, and extend Object Lock retention
#   (PutObjectRetention without BypassGovernanceRetention can only lengthen it), but cannot bypass or
#   shorten retention.
# The statements are plain HCL lists (no dynamic blocks), so tests/terraform renders them from this
# file and runs the real CLI under them against an S3 server with IAM enforcement.

locals {
  backup_principal_arn      = var.principal_type == "user" ? aws_iam_user.backup[0].arn : aws_iam_role.backup[0].arn
  maintenance_principal_arn = var.principal_type == "user" ? aws_iam_user.maintenance[0].arn : aws_iam_role.maintenance[0].arn
  extra_policy_documents = concat(
    data.aws_iam_policy_document.kms[*].json,
  )
}

data "aws_iam_policy_document" "backup" {
  source_policy_documents = local.extra_policy_documents

  statement {
    sid       = "ListRepository"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.key_prefix}*"]
    }
  }

  # check and prune look for multipart uploads that killed backups left unfinished; S3 offers no
  # prefix condition for this listing, so it covers the bucket (which holds one repository)
  statement {
    sid       = "ListUnfinishedUploads"
    effect    = "Allow"
    actions   = ["s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.this.arn]
  }

  # PutObject covers every multipart step; AbortMultipartUpload cleans up after a failed large
  # upload, ListMultipartUploadParts sizes one left unfinished
  statement {
    sid       = "ReadWriteRepositoryObjects"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.this.arn}/${local.key_prefix}*"]
  }

  # a backup writes a lock record under locks/ and deletes it when it ends
  statement {
    sid       = "DeleteOwnLockRecords"
    effect    = "Allow"
    actions   = ["s3:DeleteObject"]
    resources = ["${aws_s3_bucket.this.arn}/${local.key_prefix}locks/*"]
  }

  # explicit, so that no other policy attached to this principal can grant it
  statement {
    sid     = "DenyDeleteOutsideLocks"
    effect  = "Deny"
    actions = ["s3:DeleteObject"]
    resources = [
      "${aws_s3_bucket.this.arn}/${local.key_prefix}config",
      "${aws_s3_bucket.this.arn}/${local.key_prefix}keys/*",
      "${aws_s3_bucket.this.arn}/${local.key_prefix}data/*",
      "${aws_s3_bucket.this.arn}/${local.key_prefix}index/*",
      "${aws_s3_bucket.this.arn}/${local.key_prefix}snapshots/*",
      "${aws_s3_bucket.this.arn}/${local.key_prefix}runs/*",
      "${aws_s3_bucket.this.arn}/${local.key_prefix}damage/*",
      "${aws_s3_bucket.this.arn}/${local.key_prefix}retention/*",
      "${aws_s3_bucket.this.arn}/${local.key_prefix}acks/*",
    ]
  }

  # the retention record says what agent retain extended; a forged one could postpone extensions
  statement {
    sid       = "DenyWritingRetentionRecords"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/${local.key_prefix}retention/*"]
  }

  # an acknowledgement releases a suspicious night's protection: a compromised backup host must not
  # write one for its own night (`agent ack` is run by an admin, with the maintenance credential)
  statement {
    sid       = "DenyWritingAcknowledgements"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/${local.key_prefix}acks/*"]
  }

  statement {
    sid    = "DenyHistoryAndBucketChanges"
    effect = "Deny"
    actions = [
      "s3:DeleteObjectVersion",
      "s3:BypassGovernanceRetention",
      "s3:PutObjectRetention",
      "s3:PutObjectLegalHold",
      "s3:PutBucket*",
      "s3:PutLifecycleConfiguration",
      "s3:PutEncryptionConfiguration",
      "s3:PutReplicationConfiguration",
      "s3:DeleteBucket*",
    ]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]
  }
}

data "aws_iam_policy_document" "maintenance" {
  source_policy_documents = concat(local.extra_policy_documents, data.aws_iam_policy_document.maintenance_versions[*].json)

  statement {
    sid       = "ListRepository"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.key_prefix}*"]
    }
  }

  # prune lists and aborts the multipart uploads that killed backups left unfinished; S3 offers no
  # prefix condition for this listing, so it covers the bucket (which holds one repository)
  statement {
    sid       = "ListUnfinishedUploads"
    effect    = "Allow"
    actions   = ["s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.this.arn]
  }

  statement {
    sid       = "ReadWriteDeleteRepositoryObjects"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.this.arn}/${local.key_prefix}*"]
  }

  # agent retain: extend the retention of what live snapshots use (lengthen only: see the deny below),
  # after reading the bucket's default rule
  statement {
    sid       = "ExtendRetention"
    effect    = "Allow"
    actions   = ["s3:PutObjectRetention", "s3:GetObjectRetention"]
    resources = ["${aws_s3_bucket.this.arn}/${local.key_prefix}*"]
  }

  statement {
    sid       = "ReadObjectLockConfiguration"
    effect    = "Allow"
    actions   = ["s3:GetBucketObjectLockConfiguration"]
    resources = [aws_s3_bucket.this.arn]
  }

  # without BypassGovernanceRetention, PutObjectRetention cannot shorten (and COMPLIANCE never can)
  statement {
    sid    = "DenyRetentionAndBucketChanges"
    effect = "Deny"
    actions = [
      "s3:BypassGovernanceRetention",
      "s3:PutObjectLegalHold",
      "s3:PutBucket*",
      "s3:PutLifecycleConfiguration",
      "s3:PutEncryptionConfiguration",
      "s3:PutReplicationConfiguration",
      "s3:DeleteBucket*",
    ]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]
  }
}

# Optional: prune with object_lock=1 in its URL removes every version of a key (versions still
# under retention stay; BypassGovernanceRetention is denied above).
data "aws_iam_policy_document" "maintenance_versions" {
  count = var.maintenance_can_delete_versions ? 1 : 0

  statement {
    sid       = "ListRepositoryVersions"
    effect    = "Allow"
    actions   = ["s3:ListBucketVersions"]
    resources = [aws_s3_bucket.this.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.key_prefix}*"]
    }
  }

  statement {
    sid       = "DeleteRepositoryObjectVersions"
    effect    = "Allow"
    actions   = ["s3:GetObjectVersion", "s3:DeleteObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold"]
    resources = ["${aws_s3_bucket.this.arn}/${local.key_prefix}*"]
  }
}

data "aws_iam_policy_document" "kms" {
  count = var.kms_key_arn == null ? 0 : 1

  statement {
    sid       = "UseBucketKmsKey"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_policy" "backup" {
  name        = "${local.name_prefix}-backup"
  description = "agent backup: write and read ${var.bucket_name}/${local.key_prefix}, delete only lock records"
  policy      = data.aws_iam_policy_document.backup.json
  tags        = var.tags
}

resource "aws_iam_policy" "maintenance" {
  name        = "${local.name_prefix}-maintenance"
  description = "agent maintenance (prune): write, read and delete in ${var.bucket_name}/${local.key_prefix}"
  policy      = data.aws_iam_policy_document.maintenance.json
  tags        = var.tags
}

# ---- principal_type = "user": users in one group each (policies attach to groups, not users)

resource "aws_iam_user" "backup" {
  # checkov:skip=CKV_AWS_273: a backup machine outside AWS needs its own credential; machines in AWS should use principal_type = "role" (no IAM user is then created). Access keys are not created here, so no secret lands in the Terraform state.
  count = var.principal_type == "user" ? 1 : 0
  name  = "${local.name_prefix}-backup"
  tags  = var.tags
}

resource "aws_iam_user" "maintenance" {
  # checkov:skip=CKV_AWS_273: see aws_iam_user.backup; the maintenance credential belongs on an admin machine, not on the machines that are backed up.
  count = var.principal_type == "user" ? 1 : 0
  name  = "${local.name_prefix}-maintenance"
  tags  = var.tags
}

resource "aws_iam_group" "backup" {
  count = var.principal_type == "user" ? 1 : 0
  name  = "${local.name_prefix}-backup"
}

resource "aws_iam_group" "maintenance" {
  count = var.principal_type == "user" ? 1 : 0
  name  = "${local.name_prefix}-maintenance"
}

resource "aws_iam_group_policy_attachment" "backup" {
  count      = var.principal_type == "user" ? 1 : 0
  group      = aws_iam_group.backup[0].name
  policy_arn = aws_iam_policy.backup.arn
}

resource "aws_iam_group_policy_attachment" "maintenance" {
  count      = var.principal_type == "user" ? 1 : 0
  group      = aws_iam_group.maintenance[0].name
  policy_arn = aws_iam_policy.maintenance.arn
}

resource "aws_iam_user_group_membership" "backup" {
  count  = var.principal_type == "user" ? 1 : 0
  user   = aws_iam_user.backup[0].name
  groups = [aws_iam_group.backup[0].name]
}

resource "aws_iam_user_group_membership" "maintenance" {
  count  = var.principal_type == "user" ? 1 : 0
  user   = aws_iam_user.maintenance[0].name
  groups = [aws_iam_group.maintenance[0].name]
}

# ---- principal_type = "role"

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "AssumeAgentRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    dynamic "principals" {
      for_each = length(var.role_trusted_principal_arns) > 0 ? [var.role_trusted_principal_arns] : []
      content {
        type        = "AWS"
        identifiers = principals.value
      }
    }

    dynamic "principals" {
      for_each = length(var.role_trusted_services) > 0 ? [var.role_trusted_services] : []
      content {
        type        = "Service"
        identifiers = principals.value
      }
    }
  }
}

resource "aws_iam_role" "backup" {
  count              = var.principal_type == "role" ? 1 : 0
  name               = "${local.name_prefix}-backup"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags

  lifecycle {
    precondition {
      condition     = length(var.role_trusted_principal_arns) + length(var.role_trusted_services) > 0
      error_message = "principal_type = \"role\" needs role_trusted_principal_arns or role_trusted_services."
    }
  }
}

resource "aws_iam_role" "maintenance" {
  count              = var.principal_type == "role" ? 1 : 0
  name               = "${local.name_prefix}-maintenance"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags

  lifecycle {
    precondition {
      condition     = length(var.role_trusted_principal_arns) + length(var.role_trusted_services) > 0
      error_message = "principal_type = \"role\" needs role_trusted_principal_arns or role_trusted_services."
    }
  }
}

resource "aws_iam_role_policy_attachment" "backup" {
  count      = var.principal_type == "role" ? 1 : 0
  role       = aws_iam_role.backup[0].name
  policy_arn = aws_iam_policy.backup.arn
}

resource "aws_iam_role_policy_attachment" "maintenance" {
  count      = var.principal_type == "role" ? 1 : 0
  role       = aws_iam_role.maintenance[0].name
  policy_arn = aws_iam_policy.maintenance.arn
}
