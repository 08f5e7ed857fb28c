variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs fleetops."
}

variable "region" {
  type        = string
  description = "The Cloud Scheduler location (a region)."
}

variable "jobs_file" {
  type        = string
  description = "The job file shared with the local scheduler: shared/fleetops/data/scheduler_jobs.json, a JSON list of {name, schedule, time_zone, topic, description, data, attributes}."
}

variable "topic_ids" {
  type        = map(string)
  description = "Topic ids by topic name (modules/pubsub output topic_ids); a job may publish only to one of these."
}

variable "paused" {
  type        = bool
  description = "Create the jobs paused (for a project that should not run maintenance yet)."
  default     = false
}
