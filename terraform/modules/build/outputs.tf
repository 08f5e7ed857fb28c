output "bucket_name" {
  description = "The bucket holding the function source archives."
  value       = google_storage_bucket.sources.name
}

output "build_service_account_id" {
  description = "The build service account's resource id (projects/P/serviceAccounts/EMAIL), for build_config.service_account."
  value       = google_service_account.build.id
}

output "build_service_account_email" {
  description = "The build service account's email."
  value       = google_service_account.build.email
}

output "ready" {
  description = "Depends on every grant the builds need: functions wait for it."
  value       = { for role, member in google_project_iam_member.build : role => member.id }
}
