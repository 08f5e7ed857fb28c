# Cloud Scheduler jobs from the job file the local scheduler reads too, so the
# two never disagree. Every job publishes to a fleetops topic (a Pub/Sub
# target: Cloud Scheduler publishes as its own service agent, no token and no
# public endpoint involved). A job naming a topic that modules/pubsub does not
# declare fails the plan (and tests/terraform fails before that).

locals {
  jobs = { for job in jsondecode(file(var.jobs_file)) : job.name => job }
}

resource "google_cloud_scheduler_job" "this" {
  for_each = local.jobs

  project     = var.project_id
  region      = var.region
  name        = each.key
  description = try(each.value.description, null)
  schedule    = each.value.schedule
  time_zone   = try(each.value.time_zone, "Etc/UTC")
  paused      = var.paused

  retry_config {
    retry_count          = 3
    min_backoff_duration = "10s"
    max_backoff_duration = "300s"
  }

  pubsub_target {
    topic_name = lookup(var.topic_ids, each.value.topic, "")
    data       = base64encode(jsonencode(try(each.value.data, { job = each.key })))
    attributes = try(each.value.attributes, {})
  }

  lifecycle {
    precondition {
      condition     = contains(keys(var.topic_ids), each.value.topic)
      error_message = "The job's topic is not a topic that modules/pubsub declares."
    }
  }
}
