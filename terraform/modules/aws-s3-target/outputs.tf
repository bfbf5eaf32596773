output "bucket_name" {
  description = "Name of the repository bucket."
  value       = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  description = "ARN of the repository bucket."
  value       = aws_s3_bucket.this.arn
}

output "repository_url" {
  description = "Repository URL for `agent` with the backup credential (AGENT_REPO / --repo)."
  value       = "s3://${aws_s3_bucket.this.bucket}/${var.prefix}?region=${aws_s3_bucket.this.region}"
}

output "maintenance_repository_url" {
  description = "Repository URL for the maintenance credential: with object_lock=1 when it may delete versions, so that prune removes every version whose retention is over."
  value       = "s3://${aws_s3_bucket.this.bucket}/${var.prefix}?region=${aws_s3_bucket.this.region}${var.maintenance_can_delete_versions ? "&object_lock=1" : ""}"
}

output "backup_principal_arn" {
  description = "ARN of the backup user or role (write, read, delete own locks only)."
  value       = local.backup_principal_arn
}

output "maintenance_principal_arn" {
  description = "ARN of the maintenance user or role (prune: may also delete)."
  value       = local.maintenance_principal_arn
}

output "backup_user_name" {
  description = "Name of the backup IAM user (principal_type = \"user\"), for `aws iam create-access-key --user-name`."
  value       = var.principal_type == "user" ? aws_iam_user.backup[0].name : null
}

output "maintenance_user_name" {
  description = "Name of the maintenance IAM user (principal_type = \"user\")."
  value       = var.principal_type == "user" ? aws_iam_user.maintenance[0].name : null
}

output "backup_policy_json" {
  description = "The backup principal's IAM policy."
  value       = data.aws_iam_policy_document.backup.json
}

output "maintenance_policy_json" {
  description = "The maintenance principal's IAM policy."
  value       = data.aws_iam_policy_document.maintenance.json
}
