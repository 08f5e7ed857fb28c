output "topic_ids" {
  description = "Topic ids (projects/P/topics/NAME) by topic name, e.g. topic_ids[\"fleetops-requests\"]."
  value       = { for topic in google_pubsub_topic.this : topic.name => topic.id }
}

output "topic_names" {
  description = "Topic names by short key (requests, alerts, maintenance, steps, events, dead_letter)."
  value       = { for key, topic in google_pubsub_topic.this : key => topic.name }
}

output "dead_letter_topic_id" {
  description = "The dead-letter topic's id, for dead-letter policies."
  value       = google_pubsub_topic.this["dead_letter"].id
}

output "dead_letter_topic_name" {
  description = "The dead-letter topic's name."
  value       = google_pubsub_topic.this["dead_letter"].name
}

output "subscription_ids" {
  description = "The pull subscriptions this module creates, by name."
  value = {
    (google_pubsub_subscription.dead_letter_inbox.name) = google_pubsub_subscription.dead_letter_inbox.id
    (google_pubsub_subscription.events_audit.name)      = google_pubsub_subscription.events_audit.id
  }
}

output "pubsub_service_agent" {
  description = "The Pub/Sub service agent, as an IAM member."
  value       = local.pubsub_service_agent
}
