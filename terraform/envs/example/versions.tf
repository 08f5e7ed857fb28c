terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }

  # State is local in this example. For a shared deployment keep it in a
  # bucket instead (see docs/deploy.md):
  # backend "gcs" {
  #   bucket = "PROJECT-tfstate"
  #   prefix = "fleetops"
  # }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
