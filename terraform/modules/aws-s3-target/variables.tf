variable "bucket_name" {
  description = "Name of the S3 bucket that holds the agent repository (globally unique)."
  type        = string
}

variable "prefix" {
  description = "Key prefix of the repository inside the bucket (no leading or trailing slash); \"\" for the bucket root."
  type        = string
  default     = "agent"

  validation {
    condition     = var.prefix == "" || can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.prefix))
    error_message = "prefix must be empty or path elements separated by single slashes, without a leading or trailing slash."
  }
}

variable "name_prefix" {
  description = "Prefix for IAM names (users, roles, groups, policies). Defaults to the bucket name."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "ARN of a KMS key for default encryption (SSE-KMS). null uses SSE-S3 (AES256). Both principals get kms:GenerateDataKey and kms:Decrypt on it."
  type        = string
  default     = null
}

variable "object_lock_mode" {
  description = "Default Object Lock retention: \"GOVERNANCE\", \"COMPLIANCE\", or null for no Object Lock (versioning only). Object Lock can only be chosen when the bucket is created."
  type        = string
  default     = null

  validation {
    condition     = var.object_lock_mode == null || contains(["GOVERNANCE", "COMPLIANCE"], coalesce(var.object_lock_mode, "-"))
    error_message = "object_lock_mode must be GOVERNANCE, COMPLIANCE or null."
  }
}

variable "object_lock_days" {
  description = "Default retention in days applied to every new object version when Object Lock is on."
  type        = number
  default     = 30

  validation {
    condition     = var.object_lock_days >= 1
    error_message = "object_lock_days must be at least 1."
  }
}

variable "abort_incomplete_multipart_days" {
  description = "Abort multipart uploads left unfinished (by a killed backup) after this many days."
  type        = number
  default     = 7
}

variable "data_transition_days" {
  description = "Move pack data (PREFIX/data/) to data_transition_storage_class after this many days; null keeps it in STANDARD."
  type        = number
  default     = null
}

variable "data_transition_storage_class" {
  description = "Storage class for aged pack data. Only classes that can be read without a restore request: restore reads packs directly."
  type        = string
  default     = "STANDARD_IA"

  validation {
    condition     = contains(["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"], var.data_transition_storage_class)
    error_message = "data_transition_storage_class must be STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING or GLACIER_IR (GLACIER and DEEP_ARCHIVE need a restore before a read)."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Delete noncurrent (overwritten or deleted) versions after this many days. null: object_lock_days with Object Lock, 30 without. Never less than object_lock_days."
  type        = number
  default     = null
}

variable "principal_type" {
  description = "\"user\": IAM users (create access keys yourself); \"role\": IAM roles assumed by role_trusted_principal_arns / role_trusted_services."
  type        = string
  default     = "user"

  validation {
    condition     = contains(["user", "role"], var.principal_type)
    error_message = "principal_type must be user or role."
  }
}

variable "role_trusted_principal_arns" {
  description = "With principal_type = \"role\": AWS principals (account, user or role ARNs) allowed to assume the roles."
  type        = list(string)
  default     = []
}

variable "role_trusted_services" {
  description = "With principal_type = \"role\": AWS services allowed to assume the roles (e.g. ec2.amazonaws.com)."
  type        = list(string)
  default     = []
}

variable "maintenance_can_delete_versions" {
  description = "Let the maintenance principal delete object versions (s3:DeleteObjectVersion) so prune frees space at once (use object_lock=1 in its URL). Versions under Object Lock retention stay protected either way. false: prune only adds delete markers and the lifecycle rule expires the old versions."
  type        = bool
  default     = false
}

variable "force_destroy" {
  description = "Allow terraform destroy to empty the bucket. Keep false for a backup target."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
