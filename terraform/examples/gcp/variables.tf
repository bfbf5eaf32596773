variable "project_id" {
  description = "GCP project of the bucket and the service accounts."
  type        = string
}

variable "bucket_name" {
  description = "Globally unique bucket name, e.g. acme-agent-backups-prod."
  type        = string
}

variable "location" {
  description = "Bucket location."
  type        = string
  default     = "EU"
}

variable "prefix" {
  description = "Repository prefix inside the bucket."
  type        = string
  default     = "agent"
}
