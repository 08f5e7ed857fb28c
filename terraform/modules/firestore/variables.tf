variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs fleetops."
}

variable "location_id" {
  type        = string
  description = "Where the database lives: a multi-region such as nam5 or eur3, or a region such as us-central1. It cannot be changed once created."
}

variable "database_name" {
  type        = string
  description = "The Firestore database fleetops uses. The functions read it from FLEETOPS_FIRESTORE_DATABASE; \"(default)\" is the default database."
  default     = "(default)"
}

variable "delete_protection" {
  type        = bool
  description = "Refuse to delete the database (recommended). Set to false, apply, then destroy to tear everything down."
  default     = true
}

variable "deletion_policy" {
  type        = string
  description = "What terraform destroy does to the database: ABANDON leaves it in the project, DELETE deletes it (needs delete_protection = false)."
  default     = "ABANDON"

  validation {
    condition     = contains(["ABANDON", "DELETE"], var.deletion_policy)
    error_message = "deletion_policy must be ABANDON or DELETE."
  }
}

variable "point_in_time_recovery" {
  type        = bool
  description = "Keep 7 days of versions for point-in-time recovery of operations and instances."
  default     = true
}
