output "name" {
  description = "The function's name (fleetops-NAME)."
  value       = google_cloudfunctions2_function.this.name
}

output "url" {
  description = "The function's URL (run.app), which push subscriptions and engineers call."
  value       = local.function_uri
}

output "cloudfunctions_url" {
  description = "The function's cloudfunctions.net URL."
  value       = google_cloudfunctions2_function.this.url
}

output "service" {
  description = "The Cloud Run service behind the function."
  value       = google_cloudfunctions2_function.this.service_config[0].service
}

output "service_account_email" {
  description = "The account the function runs as."
  value       = google_service_account.runtime.email
}

output "pusher_service_account_email" {
  description = "The account whose identity token Pub/Sub pushes with; null for an http function."
  value       = local.is_event ? google_service_account.pusher[0].email : null
}

output "subscription_id" {
  description = "The push subscription feeding the function; null for an http function."
  value       = local.is_event ? google_pubsub_subscription.push[0].id : null
}

output "source_object" {
  description = "The source archive in the bucket (functions/NAME/MD5.zip)."
  value       = google_storage_bucket_object.source.name
}
