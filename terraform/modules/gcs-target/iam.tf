# Two service accounts with a split of rights on the bucket:
# - backup: objectViewer + objectCreator (read, list, create), and storage.objects.delete only on
#   PREFIX/locks/ through an IAM condition on a one-permission custom role. GCS treats an overwrite
#   as a delete, so the backup can refresh and release its own lock records but cannot delete,
#   overwrite or change the retention of any data, index, snapshot, key or config object.
# - maintenance (prune, key removal): var.maintenance_role (objectUser by default) on the bucket.
# Neither can change the bucket (versioning, retention policy, lifecycle, IAM): no storage.buckets.*.

locals {
  backup_member      = "serviceAccount:${google_service_account.backup.email}"
  maintenance_member = "serviceAccount:${google_service_account.maintenance.email}"
  # IAM conditions see objects as projects/_/buckets/BUCKET/objects/NAME
  locks_resource_prefix = "projects/_/buckets/${google_storage_bucket.this.name}/objects/${local.key_prefix}locks/"
}

resource "google_service_account" "backup" {
  project      = var.project_id
  account_id   = "${var.account_id_prefix}-backup"
  display_name = "agent backup (${var.bucket_name}/${local.key_prefix})"
  description  = "Writes and reads the agent repository; deletes only its lock records."
}

resource "google_service_account" "maintenance" {
  project      = var.project_id
  account_id   = "${var.account_id_prefix}-maintenance"
  display_name = "agent maintenance (${var.bucket_name}/${local.key_prefix})"
  description  = "Prunes the agent repository: may delete objects."
}

resource "google_storage_bucket_iam_member" "backup_viewer" {
  bucket = google_storage_bucket.this.name
  role   = "roles/storage.objectViewer"
  member = local.backup_member
}

resource "google_storage_bucket_iam_member" "backup_creator" {
  bucket = google_storage_bucket.this.name
  role   = "roles/storage.objectCreator"
  member = local.backup_member
}

resource "google_project_iam_custom_role" "lock_delete" {
  project     = var.project_id
  role_id     = "${replace(var.account_id_prefix, "-", "_")}_lock_delete"
  title       = "agent: delete lock records"
  description = "storage.objects.delete alone; bound to the agent backup account with a condition on PREFIX/locks/."
  permissions = ["storage.objects.delete"]
}

resource "google_storage_bucket_iam_member" "backup_lock_delete" {
  bucket = google_storage_bucket.this.name
  role   = google_project_iam_custom_role.lock_delete.name
  member = local.backup_member

  condition {
    title       = "agent-lock-records-only"
    description = "Only objects under ${local.key_prefix}locks/"
    expression  = "resource.name.startsWith(\"${local.locks_resource_prefix}\")"
  }
}

resource "google_storage_bucket_iam_member" "maintenance" {
  bucket = google_storage_bucket.this.name
  role   = var.maintenance_role
  member = local.maintenance_member
}
