variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs fleetops."
}

variable "project_number" {
  type        = string
  description = "The project's number, which names Monitoring's notification service agent (service-NUMBER@gcp-sa-monitoring-notification.iam.gserviceaccount.com)."
}

variable "alerts_topic_id" {
  type        = string
  description = "The fleetops-alerts topic's id (projects/P/topics/fleetops-alerts)."
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
  description = "Example health checks: per instance id (the key, which becomes the fleetops_instance label), the host serving /healthz, and optionally the playbook (fleetops_playbook label) to remediate it with."
  default     = {}

  validation {
    condition     = alltrue([for id in keys(var.instances) : can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", id))])
    error_message = "Instance ids are 3 to 40 characters of a-z, 0-9 and dashes, starting with a letter (the contract's instance id)."
  }
}

variable "alert_duration" {
  type        = string
  description = "How long a health check must fail before the incident opens."
  default     = "120s"
}

variable "auto_close" {
  type        = string
  description = "An incident whose condition has not been met for this long closes by itself."
  default     = "1800s"
}
