variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs fleetops."
}

variable "project_number" {
  type        = string
  description = "The project's number, which names the Pub/Sub service agent (service-NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com)."
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every topic and subscription."
  default     = {}
}

variable "kms_key_name" {
  type        = string
  description = "A Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) to encrypt the topics with; null keeps Google-managed encryption. The Pub/Sub service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  default     = null
}

variable "retention" {
  type        = string
  description = "How long the dead-letter inbox and the events audit subscription keep unacknowledged messages (at most 7 days)."
  default     = "604800s"
}

variable "request_publishers" {
  type        = list(string)
  description = "IAM members who may publish requests to fleetops-requests (e.g. group:engineers@example.com)."
  default     = []
}
