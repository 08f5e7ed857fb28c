# What building the functions needs: a private bucket for their source
# archives (one object per content hash, written by modules/function) and a
# dedicated Cloud Build service account, so builds do not run as the Compute
# Engine default service account.

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Access to the source archives is recorded by Cloud Audit Logs; a second bucket only for usage logs would hold nothing more.
  project                     = var.project_id
  name                        = coalesce(var.bucket_name, "${var.project_id}-fleetops-sources")
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "fleetops-build"
  display_name = "fleetops function builds"
  description  = "Cloud Build runs the fleetops function builds as this account."
}

# What a Cloud Run functions build needs (Cloud Run's "build service account"
# guide): write build logs, push the image to Artifact Registry (gcf-artifacts),
# read the source archive that Cloud Run functions stages in its own bucket and
# write the build cache there.
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
    "roles/storage.objectAdmin",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}
