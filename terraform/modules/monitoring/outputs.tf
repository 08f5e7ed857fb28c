output "notification_channel_id" {
  description = "The Pub/Sub notification channel (projects/P/notificationChannels/ID): add it to any alert policy whose incidents fleetops should handle."
  value       = google_monitoring_notification_channel.alerts.name
}

output "notification_service_agent" {
  description = "Monitoring's notification service agent, publisher on fleetops-alerts."
  value       = local.notification_service_agent
}

output "uptime_check_ids" {
  description = "Uptime check ids by instance."
  value       = { for id, check in google_monitoring_uptime_check_config.healthz : id => check.uptime_check_id }
}

output "alert_policy_ids" {
  description = "Alert policy names (projects/P/alertPolicies/ID) by instance."
  value       = { for id, policy in google_monitoring_alert_policy.healthz : id => policy.name }
}
