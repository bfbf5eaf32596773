# Example: one agent repository in S3 under Object Lock (GOVERNANCE, 30 days), with an IAM user
# for backups and one for maintenance (prune). See docs/terraform.md.

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      purpose = "agent-backup"
    }
  }
}

module "backup_target" {
  source = "../../modules/aws-s3-target"

  bucket_name      = var.bucket_name
  prefix           = var.prefix
  object_lock_mode = var.object_lock_mode
  object_lock_days = var.object_lock_days

  abort_incomplete_multipart_days = 7
  data_transition_days            = 30
  data_transition_storage_class   = "STANDARD_IA"

  principal_type = "user"

  # prune leaves delete markers; the old versions expire once their retention is over. (true would
  # let prune remove versions at once, but it stops at the first one still under retention.)
  maintenance_can_delete_versions = false
}
