variable "project_id" {
  description = "Project that owns the bucket, the service accounts and the custom role."
  type        = string
}

variable "bucket_name" {
  description = "Name of the GCS bucket that holds the agent repository (globally unique)."
  type        = string
}

variable "location" {
  description = "Bucket location (region, dual-region or multi-region), e.g. EU or europe-west3."
  type        = string
}

variable "prefix" {
  description = "Object name prefix of the repository inside the bucket (no leading or trailing slash); \"\" for the bucket root."
  type        = string
  default     = "agent"

  validation {
    condition     = var.prefix == "" || can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.prefix))
    error_message = "prefix must be empty or path elements separated by single slashes, without a leading or trailing slash."
  }
}

variable "account_id_prefix" {
  description = "Prefix of the two service account ids (6-30 characters in all: keep it at most 18)."
  type        = string
  default     = "agent"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,17}$", var.account_id_prefix))
    error_message = "account_id_prefix must start with a letter, use a-z, 0-9 and -, and be at most 18 characters."
  }
}

variable "protection" {
  description = "\"versioning\": deleted and overwritten objects stay as noncurrent versions for noncurrent_version_days; \"retention_policy\": a bucket retention policy of retention_days forbids any delete or overwrite before then (GCS allows only one of the two)."
  type        = string
  default     = "versioning"

  validation {
    condition     = contains(["versioning", "retention_policy"], var.protection)
    error_message = "protection must be versioning or retention_policy."
  }
}

variable "retention_days" {
  description = "With protection = \"retention_policy\": minimum age in days before an object can be deleted or replaced."
  type        = number
  default     = 30
}

variable "lock_retention_policy" {
  description = "Lock the retention policy (irreversible: it can then never be shortened or removed, nor the bucket deleted while it holds objects)."
  type        = bool
  default     = false
}

variable "noncurrent_version_days" {
  description = "With protection = \"versioning\": delete noncurrent versions this many days after they became noncurrent."
  type        = number
  default     = 30
}

variable "soft_delete_days" {
  description = "Soft-delete window in days (0 to 90; 0 turns it off). Deleted objects stay restorable, and billed, for this long."
  type        = number
  default     = 7
}

variable "abort_incomplete_multipart_days" {
  description = "Abort XML-API multipart uploads left unfinished after this many days (the agent uses resumable uploads, which expire by themselves after a week)."
  type        = number
  default     = 7
}

variable "data_transition_days" {
  description = "Move pack data (PREFIX/data/) to data_transition_storage_class after this many days; null keeps it in the bucket's default class."
  type        = number
  default     = null
}

variable "data_transition_storage_class" {
  description = "Storage class for aged pack data (all GCS classes can be read directly; colder ones cost more per read)."
  type        = string
  default     = "NEARLINE"

  validation {
    condition     = contains(["NEARLINE", "COLDLINE", "ARCHIVE"], var.data_transition_storage_class)
    error_message = "data_transition_storage_class must be NEARLINE, COLDLINE or ARCHIVE."
  }
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/.../cryptoKeys/...) for default encryption; null uses Google-managed keys. The GCS service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null
}

variable "maintenance_role" {
  description = "Role of the maintenance service account on the bucket. roles/storage.objectUser can prune; roles/storage.objectAdmin (storage.objects.*) also lets it set and override per-object retention."
  type        = string
  default     = "roles/storage.objectUser"

  validation {
    condition     = contains(["roles/storage.objectUser", "roles/storage.objectAdmin"], var.maintenance_role)
    error_message = "maintenance_role must be roles/storage.objectUser or roles/storage.objectAdmin."
  }
}

variable "force_destroy" {
  description = "Allow terraform destroy to empty the bucket. Keep false for a backup target."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels for the bucket."
  type        = map(string)
  default     = {}
}
