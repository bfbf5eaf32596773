output "repository_url" {
  description = "AGENT_REPO for both service accounts."
  value       = module.backup_target.repository_url
}

output "backup_service_account_email" {
  description = "Service account for backups."
  value       = module.backup_target.backup_service_account_email
}

output "maintenance_service_account_email" {
  description = "Service account for prune."
  value       = module.backup_target.maintenance_service_account_email
}
