output "repository_url" {
  description = "AGENT_REPO for backups (backup credential)."
  value       = module.backup_target.repository_url
}

output "maintenance_repository_url" {
  description = "AGENT_REPO for prune (maintenance credential)."
  value       = module.backup_target.maintenance_repository_url
}

output "backup_user_name" {
  description = "Create its access key with: aws iam create-access-key --user-name <this>"
  value       = module.backup_target.backup_user_name
}

output "maintenance_user_name" {
  description = "Create its access key with: aws iam create-access-key --user-name <this>"
  value       = module.backup_target.maintenance_user_name
}

output "backup_principal_arn" {
  description = "ARN of the backup user."
  value       = module.backup_target.backup_principal_arn
}

output "maintenance_principal_arn" {
  description = "ARN of the maintenance user."
  value       = module.backup_target.maintenance_principal_arn
}
