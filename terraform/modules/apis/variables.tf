variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs fleetops."
}

variable "services" {
  type        = list(string)
  description = "APIs fleetops needs: Cloud Run functions and their build, Pub/Sub, Firestore, Cloud Scheduler, Cloud Monitoring, IAM and Compute Engine (where the fleet runs)."
  default = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ]
}

variable "disable_on_destroy" {
  type        = bool
  description = "Disable the APIs when this module is destroyed. Off by default: other things in the project may use them."
  default     = false
}
