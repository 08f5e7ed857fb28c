variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs fleetops."
}

variable "project_number" {
  type        = string
  description = "The project's number, which names the Pub/Sub service agent (service-NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com)."
}

variable "region" {
  type        = string
  description = "The region the function runs in."
}

variable "name" {
  type        = string
  description = "The function's folder name under functions/ (e.g. requests). The function is fleetops-NAME; its service accounts are fleetops-NAME-fn and fleetops-NAME-push."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,14}[a-z0-9]$", var.name))
    error_message = "name must be 2 to 16 lower-case letters, digits or dashes, starting with a letter: it must fit in a service account id."
  }
}

variable "description" {
  type        = string
  description = "What the function does (from its function.json)."
  default     = ""
}

variable "entry_point" {
  type        = string
  description = "The top-level function in main.py that functions-framework calls."
}

variable "signature" {
  type        = string
  description = "cloudevent for a function fed by a Pub/Sub push subscription, http for one that users call (the API)."

  validation {
    condition     = contains(["cloudevent", "http"], var.signature)
    error_message = "signature must be cloudevent or http."
  }
}

variable "trigger_topic" {
  type        = string
  description = "The topic name whose messages are pushed to the function; null for an http function."
  default     = null
}

variable "roles" {
  type        = list(string)
  description = "Project roles of the function's own service account, and nothing else (from its function.json)."
}

variable "memory" {
  type        = string
  description = "Memory of one instance, e.g. 256Mi."
  default     = "256Mi"
}

variable "timeout_seconds" {
  type        = number
  description = "How long one invocation may run. For an event function it must stay below 600 s, the longest acknowledgement deadline."
  default     = 60
}

variable "max_instances" {
  type        = number
  description = "Most instances at once."
  default     = 10
}

variable "min_instances" {
  type        = number
  description = "Instances kept warm."
  default     = 0
}

variable "ingress" {
  type        = string
  description = "Who may reach the function over the network; null means ALLOW_INTERNAL_ONLY for event functions (Pub/Sub push in the same project counts as internal) and ALLOW_ALL for http functions, which still require an identity token."
  default     = null

  validation {
    condition     = var.ingress == null || contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], coalesce(var.ingress, "ALLOW_ALL"))
    error_message = "ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "environment" {
  type        = map(string)
  description = "Extra environment variables of the function (GOOGLE_CLOUD_PROJECT and FLEETOPS_FUNCTION are always set)."
  default     = {}
}

variable "source_dir" {
  type        = string
  description = "The packaged function, build/functions/NAME, written by `nox -s package` (tools/package_functions.py)."
}

variable "archive_dir" {
  type        = string
  description = "Where to write the zip of source_dir before upload (outside source_dir)."
}

variable "source_bucket" {
  type        = string
  description = "The bucket for source archives (modules/build)."
}

variable "build_service_account_id" {
  type        = string
  description = "The service account Cloud Build runs the build as (projects/P/serviceAccounts/EMAIL)."
}

variable "topic_ids" {
  type        = map(string)
  description = "Topic ids by topic name (modules/pubsub output topic_ids)."
}

variable "dead_letter_topic_name" {
  type        = string
  description = "The dead-letter topic's name."
}

variable "dead_letter_topic_id" {
  type        = string
  description = "The dead-letter topic's id (projects/P/topics/NAME)."
}

variable "invoker_members" {
  type        = list(string)
  description = "IAM members given roles/run.invoker on the function (e.g. group:engineers@example.com for the API). The push subscription's own service account is added for event functions."
  default     = []
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the function and its subscription."
  default     = {}
}
