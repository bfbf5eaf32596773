output "bucket_name" {
  description = "Name of the repository bucket."
  value       = google_storage_bucket.this.name
}

output "repository_url" {
  description = "Repository URL for `agent` (AGENT_REPO / --repo); the same for both service accounts."
  value       = "gs://${google_storage_bucket.this.name}/${var.prefix}?project=${var.project_id}"
}

output "backup_service_account_email" {
  description = "Service account for `agent backup` (read, list, create; delete only lock records)."
  value       = google_service_account.backup.email
}

output "maintenance_service_account_email" {
  description = "Service account for prune and key removal (may delete)."
  value       = google_service_account.maintenance.email
}

output "lock_records_condition" {
  description = "The IAM condition that limits the backup account's deletes to lock records."
  value       = google_storage_bucket_iam_member.backup_lock_delete.condition[0].expression
}
