output "function_urls" {
  description = "Each function's URL, by function name."
  value       = { for name, function in module.function : name => function.url }
}

output "api_url" {
  description = "The API's URL (the http function); set FLEETOPS_API_URL to it. Null until an http function exists."
  value       = length(local.http_functions) > 0 ? module.function[local.http_functions[0]].url : null
}

output "function_service_accounts" {
  description = "The account each function runs as, by function name."
  value       = { for name, function in module.function : name => function.service_account_email }
}

output "push_service_accounts" {
  description = "The account each push subscription signs with, by event function name."
  value       = { for name, function in module.function : name => function.pusher_service_account_email if function.pusher_service_account_email != null }
}

output "push_subscriptions" {
  description = "The push subscription feeding each event function, by function name."
  value       = { for name, function in module.function : name => function.subscription_id if function.subscription_id != null }
}

output "topic_ids" {
  description = "Topic ids by topic name: publish requests to topic_ids[\"fleetops-requests\"]."
  value       = module.pubsub.topic_ids
}

output "pull_subscriptions" {
  description = "The dead-letter inbox and the events audit subscription."
  value       = module.pubsub.subscription_ids
}

output "notification_channel_id" {
  description = "The Monitoring notification channel to fleetops: add it to alert policies labelled fleetops_instance."
  value       = module.monitoring.notification_channel_id
}

output "alert_policy_ids" {
  description = "The example alert policies, by instance."
  value       = module.monitoring.alert_policy_ids
}

output "uptime_check_ids" {
  description = "The example uptime checks, by instance."
  value       = module.monitoring.uptime_check_ids
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job ids by job name."
  value       = module.scheduler.job_ids
}

output "firestore_database" {
  description = "The Firestore database fleetops uses."
  value       = module.firestore.database_name
}

output "source_bucket" {
  description = "The bucket holding the function source archives."
  value       = module.build.bucket_name
}

output "build_service_account" {
  description = "The account Cloud Build builds the functions as."
  value       = module.build.build_service_account_email
}

output "engineers_group" {
  description = "The group allowed to call the API."
  value       = var.engineers_group
}
