variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs fleetops."
}

variable "location" {
  type        = string
  description = "Where the source bucket lives; the functions' region is a good choice."
}

variable "bucket_name" {
  type        = string
  description = "The bucket for function source archives; null names it PROJECT-fleetops-sources."
  default     = null
}

variable "force_destroy" {
  type        = bool
  description = "Let terraform destroy delete the bucket with the source archives in it."
  default     = false
}

variable "noncurrent_days" {
  type        = number
  description = "Days an overwritten or deleted source archive is kept before it is deleted."
  default     = 30
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the bucket."
  default     = {}
}
