# The bucket of one agent repository: private, encrypted, versioned, optionally under Object Lock,
# reachable over TLS only, with lifecycle rules that clean up what a killed backup or a prune
# leaves behind. The two principals that use it are in iam.tf.

locals {
  # "agent" -> "agent/"; "" -> "" (the repository at the bucket root). Every object ARN below is
  # "<bucket arn>/${local.key_prefix}...", which the tests substitute when they render the policies.
  key_prefix  = var.prefix == "" ? "" : "${var.prefix}/"
  name_prefix = coalesce(var.name_prefix, var.bucket_name)
  object_lock = var.object_lock_mode != null
  lock_days   = local.object_lock ? var.object_lock_days : 0
  # a noncurrent version must outlive its retention, or the rule would fight the lock
  noncurrent_days = max(coalesce(var.noncurrent_version_expiration_days, local.object_lock ? var.object_lock_days : 30), local.lock_days, 1)
}

resource "aws_s3_bucket" "this" {
  # checkov:skip=CKV_AWS_18: access logging needs a second (log) bucket that this module does not own; the agent's own logs and CloudTrail data events cover reads and writes. Enable it with aws_s3_bucket_logging next to the module if required.
  # checkov:skip=CKV_AWS_144: cross-region replication doubles the cost and needs a second bucket in another region; a second agent repository (another target) is the documented way to keep a second copy.
  # checkov:skip=CKV2_AWS_62: event notifications have no consumer here; nothing in the backup flow reacts to bucket events.
  # checkov:skip=CKV_AWS_145: SSE-KMS is available through var.kms_key_arn; the default is SSE-S3 because every object is already encrypted and authenticated client-side by the agent (docs/security.md), so a KMS key adds cost and a second key to manage, not secrecy.
  bucket              = var.bucket_name
  force_destroy       = var.force_destroy
  object_lock_enabled = local.object_lock
  tags                = var.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced" # ACLs off: access is decided by IAM alone
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled" # required by Object Lock; without it, versions are what makes a delete undoable
  }
}

resource "aws_s3_bucket_object_lock_configuration" "this" {
  count  = local.object_lock ? 1 : 0
  bucket = aws_s3_bucket.this.id
  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {} # the whole bucket: no upload in it should be left unfinished for longer
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  # What prune deleted (and lock records the backups overwrote or released) stays as noncurrent
  # versions until the lock period is over; then it is really deleted.
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {
      prefix = local.key_prefix
    }
    noncurrent_version_expiration {
      noncurrent_days = local.noncurrent_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  # optional: a plain rule switched by its status (a dynamic block would hide the other rules from checkov)
  rule {
    id     = "transition-pack-data"
    status = var.data_transition_days == null ? "Disabled" : "Enabled"
    filter {
      prefix = "${local.key_prefix}data/"
    }
    transition {
      days          = coalesce(var.data_transition_days, 30)
      storage_class = var.data_transition_storage_class
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# Bucket policy: TLS only for everyone, and the backup principal's history-protecting denies
# repeated here, so that a broader identity policy attached to it later cannot undo them.
data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid    = "DenyBackupPrincipalHistoryChanges"
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
    principals {
      type        = "AWS"
      identifiers = [local.backup_principal_arn]
    }
  }

  statement {
    sid     = "DenyBackupPrincipalDeleteOutsideLocks"
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
    principals {
      type        = "AWS"
      identifiers = [local.backup_principal_arn]
    }
  }

  statement {
    sid       = "DenyBackupPrincipalWritingAcknowledgements"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/${local.key_prefix}acks/*"]
    principals {
      type        = "AWS"
      identifiers = [local.backup_principal_arn]
    }
  }

  statement {
    sid       = "DenyBackupPrincipalWritingRetentionRecords"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/${local.key_prefix}retention/*"]
    principals {
      type        = "AWS"
      identifiers = [local.backup_principal_arn]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json
  # the public access block must exist first, or AWS may refuse the policy while it is evaluated
  depends_on = [aws_s3_bucket_public_access_block.this]
}
