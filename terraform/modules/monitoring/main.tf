# Cloud Monitoring -> fleetops: a Pub/Sub notification channel on
# fleetops-alerts (incidents arrive as Monitoring sends them, see
# shared/contract.md section 4), and per instance an example uptime check on
# its /healthz with an alert policy labelled fleetops_instance, notifying on
# open and on close.

locals {
  notification_service_agent = "serviceAccount:service-${var.project_number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
}

resource "google_monitoring_notification_channel" "alerts" {
  project      = var.project_id
  display_name = "fleetops (fleetops-alerts)"
  description  = "Incidents go to fleetops, which remediates the instance named by the fleetops_instance label."
  type         = "pubsub"

  labels = {
    topic = var.alerts_topic_id
  }
}

# Monitoring publishes as its notification service agent, which exists once
# the project has a Pub/Sub notification channel.
resource "google_pubsub_topic_iam_member" "monitoring_publisher" {
  project = var.project_id
  topic   = var.alerts_topic_id
  role    = "roles/pubsub.publisher"
  member  = local.notification_service_agent

  depends_on = [google_monitoring_notification_channel.alerts]
}

resource "google_monitoring_uptime_check_config" "healthz" {
  for_each = var.instances

  project      = var.project_id
  display_name = "fleetops ${each.key} ${each.value.path}"
  timeout      = "10s"
  period       = each.value.period

  http_check {
    path         = each.value.path
    port         = each.value.port
    use_ssl      = each.value.use_ssl
    validate_ssl = each.value.use_ssl
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = each.value.host
    }
  }

  user_labels = {
    fleetops_instance = each.key
  }
}

resource "google_monitoring_alert_policy" "healthz" {
  for_each = var.instances

  project               = var.project_id
  display_name          = "fleetops ${each.key} unhealthy"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.alerts.name]

  user_labels = merge(
    { fleetops_instance = each.key },
    each.value.playbook == null ? {} : { fleetops_playbook = each.value.playbook },
  )

  conditions {
    display_name = "${each.key} fails its ${each.value.path} check"

    condition_threshold {
      filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND metric.label.check_id=\"${google_monitoring_uptime_check_config.healthz[each.key].uptime_check_id}\" AND resource.type=\"uptime_url\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = var.alert_duration

      aggregations {
        alignment_period     = "1200s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.*"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close           = var.auto_close
    notification_prompts = ["OPENED", "CLOSED"]
  }

  documentation {
    mime_type = "text/markdown"
    content   = "fleetops remediates `${each.key}` on its own (playbook: ${coalesce(each.value.playbook, "default: restart, replace, escalate")}). Follow it with `fleetops ops list --instance ${each.key}`."
  }

  depends_on = [google_pubsub_topic_iam_member.monitoring_publisher]
}
