variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs fleetops (billing enabled)."
}

variable "region" {
  type        = string
  description = "Region of the functions, the source bucket and the Cloud Scheduler jobs."
  default     = "us-central1"
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database: a multi-region (nam5, eur3) or a region. Fixed once created."
  default     = "nam5"
}

variable "engineers_group" {
  type        = string
  description = "The Google group of engineers: they may call the API function (roles/run.invoker) and publish requests to fleetops-requests, e.g. fleetops-engineers@example.com."

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.engineers_group))
    error_message = "engineers_group must be the group's email address."
  }
}

variable "instances" {
  type = map(object({
    host     = string
    path     = optional(string, "/healthz")
    port     = optional(number, 443)
    use_ssl  = optional(bool, true)
    period   = optional(string, "60s")
    playbook = optional(string)
  }))
  description = "Instances to watch with an example uptime check on /healthz and an alert policy to fleetops, by instance id."
  default     = {}
}

variable "function_environment" {
  type        = map(string)
  description = "Extra environment variables for every function (e.g. FLEETOPS_ACTUATOR)."
  default     = {}
}

variable "labels" {
  type        = map(string)
  description = "Labels put on what supports them."
  default     = { app = "fleetops" }
}

variable "firestore_delete_protection" {
  type        = bool
  description = "Refuse to delete the Firestore database. Set to false (and firestore_deletion_policy to DELETE) before terraform destroy to remove it too."
  default     = true
}

variable "firestore_deletion_policy" {
  type        = string
  description = "What terraform destroy does to the database: ABANDON keeps it, DELETE deletes it."
  default     = "ABANDON"
}

variable "force_destroy_sources" {
  type        = bool
  description = "Let terraform destroy delete the source bucket with its archives."
  default     = false
}

variable "scheduler_paused" {
  type        = bool
  description = "Create the Cloud Scheduler jobs paused."
  default     = false
}
