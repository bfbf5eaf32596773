# The bucket of one agent repository: uniform bucket-level access, no public access, versioning or
# a retention policy, lifecycle rules. The two service accounts that use it are in iam.tf.

locals {
  key_prefix = var.prefix == "" ? "" : "${var.prefix}/"
  versioning = var.protection == "versioning"
}

resource "google_storage_bucket" "this" {
  # checkov:skip=CKV_GCP_62: access logging needs a second (log) bucket that this module does not own; Cloud Audit Logs (data access) are the better record and are a project setting.
  name                        = var.bucket_name
  project                     = var.project_id
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true       # IAM only, no object ACLs; also required for the conditional binding in iam.tf
  public_access_prevention    = "enforced" # no allUsers / allAuthenticatedUsers, whatever IAM says
  force_destroy               = var.force_destroy
  labels                      = var.labels

  # GCS allows either versioning or a retention policy on a bucket, not both
  versioning {
    enabled = local.versioning
  }

  dynamic "retention_policy" {
    for_each = local.versioning ? [] : [var.retention_days]
    content {
      retention_period = retention_policy.value * 86400
      is_locked        = var.lock_retention_policy
    }
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_days * 86400
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  lifecycle_rule {
    action {
      type = "AbortIncompleteMultipartUpload"
    }
    condition {
      age = var.abort_incomplete_multipart_days
    }
  }

  # what prune deleted, and lock records that backups overwrote or released, go for good after
  # noncurrent_version_days (only versioned buckets have noncurrent versions)
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.data_transition_days == null ? [] : [var.data_transition_days]
    content {
      action {
        type          = "SetStorageClass"
        storage_class = var.data_transition_storage_class
      }
      condition {
        age            = lifecycle_rule.value
        matches_prefix = ["${local.key_prefix}data/"]
        with_state     = "LIVE"
      }
    }
  }
}
