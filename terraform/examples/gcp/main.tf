# Example: one agent repository in GCS with versioning, and a service account for backups and one
# for maintenance (prune). See docs/terraform.md.

provider "google" {
  project = var.project_id
}

module "backup_target" {
  source = "../../modules/gcs-target"

  project_id  = var.project_id
  bucket_name = var.bucket_name
  location    = var.location
  prefix      = var.prefix

  protection              = "versioning"
  noncurrent_version_days = 30
  soft_delete_days        = 7

  data_transition_days          = 30
  data_transition_storage_class = "NEARLINE"
}
