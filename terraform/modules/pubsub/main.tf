# Every topic of the contract (shared/contract.md section 1, and
# fleetops.contract.names.ALL_TOPICS in code), the dead-letter topic's
# permissions, and the pull subscriptions that keep what nobody pushes
# anywhere: without a subscription, a message on a topic is lost.

locals {
  topics = {
    requests    = "fleetops-requests"
    alerts      = "fleetops-alerts"
    maintenance = "fleetops-maintenance"
    steps       = "fleetops-steps"
    events      = "fleetops-events"
    dead_letter = "fleetops-dead-letter"
  }

  pubsub_service_agent = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "this" {
  for_each = local.topics

  project      = var.project_id
  name         = each.value
  labels       = var.labels
  kms_key_name = var.kms_key_name
}

# Dead-letter policies publish as the Pub/Sub service agent. Each push
# subscription (modules/function) lets the same agent subscribe to it.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.this["dead_letter"].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# Engineers publish fleetops.instance.requested events themselves (gcloud, CLI).
resource "google_pubsub_topic_iam_member" "request_publishers" {
  for_each = toset(var.request_publishers)

  project = var.project_id
  topic   = google_pubsub_topic.this["requests"].name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# Everything dead-lettered stays here for `fleetops dlq list` and `replay`
# (the local stack has the same subscription). It has no dead-letter policy of
# its own: it is the end of the line, and dead-lettering it into its own topic
# would loop.
resource "google_pubsub_subscription" "dead_letter_inbox" {
  project                    = var.project_id
  name                       = "fleetops-dead-letter-inbox"
  topic                      = google_pubsub_topic.this["dead_letter"].id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = var.retention
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
}

# A copy of every outbound event, for audit and for bridges to read at their pace.
resource "google_pubsub_subscription" "events_audit" {
  project                    = var.project_id
  name                       = "fleetops-events-audit"
  topic                      = google_pubsub_topic.this["events"].id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = var.retention

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.this["dead_letter"].id
    max_delivery_attempts = 5
  }

  depends_on = [google_pubsub_topic_iam_member.dead_letter_publisher]
}

resource "google_pubsub_subscription_iam_member" "events_audit_dead_letter_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.events_audit.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
