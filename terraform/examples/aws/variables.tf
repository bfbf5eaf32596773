variable "region" {
  description = "AWS region of the bucket."
  type        = string
  default     = "eu-central-1"
}

variable "bucket_name" {
  description = "Globally unique bucket name, e.g. acme-agent-backups-prod."
  type        = string
}

variable "prefix" {
  description = "Repository prefix inside the bucket."
  type        = string
  default     = "agent"
}

variable "object_lock_mode" {
  description = "GOVERNANCE, COMPLIANCE, or null for versioning only."
  type        = string
  default     = "GOVERNANCE"
}

variable "object_lock_days" {
  description = "Default retention of every object version, in days."
  type        = number
  default     = 30
}
