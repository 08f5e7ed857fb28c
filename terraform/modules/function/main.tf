# One Cloud Run function (2nd gen) from its packaged folder: the source archive
# in a bucket under its content hash, its own service account with the roles of
# its manifest and nothing else, and, for an event function, our own push
# subscription to it (not an Eventarc trigger), with retries, a dead-letter
# policy and an OIDC identity that may invoke only this function.

locals {
  is_event = var.signature == "cloudevent"

  # A subscription on the dead-letter topic must not dead-letter into that
  # same topic: a message that keeps failing would come back to it forever.
  # Its messages stay on the subscription and in the dead-letter inbox.
  consumes_dead_letter_topic = var.trigger_topic == var.dead_letter_topic_name

  ingress = coalesce(var.ingress, local.is_event ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL")

  pubsub_service_agent = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  function_uri = google_cloudfunctions2_function.this.service_config[0].uri
}

data "archive_file" "source" {
  type             = "zip"
  source_dir       = var.source_dir
  output_path      = "${var.archive_dir}/${var.name}.zip"
  output_file_mode = "0644"
  excludes         = ["__pycache__", "*/__pycache__", "*.pyc"]
}

# A new object for every new content hash: a changed source makes a new build.
resource "google_storage_bucket_object" "source" {
  name         = "functions/${var.name}/${data.archive_file.source.output_md5}.zip"
  bucket       = var.source_bucket
  source       = data.archive_file.source.output_path
  content_type = "application/zip"
}

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "fleetops-${var.name}-fn"
  display_name = "fleetops ${var.name} function"
  description  = "The fleetops-${var.name} function runs as this account."
}

resource "google_project_iam_member" "runtime" {
  for_each = toset(var.roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_cloudfunctions2_function" "this" {
  project     = var.project_id
  location    = var.region
  name        = "fleetops-${var.name}"
  description = var.description
  labels      = var.labels

  build_config {
    runtime         = "python312"
    entry_point     = var.entry_point
    service_account = var.build_service_account_id

    source {
      storage_source {
        bucket = var.source_bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.runtime.email
    available_memory                 = var.memory
    timeout_seconds                  = var.timeout_seconds
    max_instance_count               = var.max_instances
    min_instance_count               = var.min_instances
    ingress_settings                 = local.ingress
    all_traffic_on_latest_revision   = true
    max_instance_request_concurrency = 1

    environment_variables = merge(var.environment, {
      GOOGLE_CLOUD_PROJECT = var.project_id
      FLEETOPS_FUNCTION    = var.name
      LOG_EXECUTION_ID     = "true"
    })
  }

  lifecycle {
    precondition {
      condition     = local.is_event == (var.trigger_topic != null)
      error_message = "A cloudevent function needs a trigger_topic; an http function has none."
    }
    precondition {
      condition     = var.trigger_topic == null || contains(keys(var.topic_ids), coalesce(var.trigger_topic, "-"))
      error_message = "trigger_topic is not a topic that modules/pubsub declares."
    }
    precondition {
      condition     = !local.is_event || var.timeout_seconds < 600
      error_message = "An event function's timeout must stay below 600 s so that the acknowledgement deadline (at most 600 s) outlasts it."
    }
  }

  depends_on = [google_project_iam_member.runtime]
}

# Who may call the function (the API's engineers).
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = toset(var.invoker_members)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}

# The identity Pub/Sub signs its pushes with: it may invoke this function only.
resource "google_service_account" "pusher" {
  count = local.is_event ? 1 : 0

  project      = var.project_id
  account_id   = "fleetops-${var.name}-push"
  display_name = "fleetops ${var.name} push"
  description  = "Pub/Sub pushes ${coalesce(var.trigger_topic, "-")} to fleetops-${var.name} with this account's identity token."
}

resource "google_cloud_run_v2_service_iam_member" "pusher" {
  count = local.is_event ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pusher[0].email}"
}

# Pub/Sub mints the push identity tokens as its service agent. Projects created
# since April 2021 grant this implicitly; older ones need it.
resource "google_service_account_iam_member" "pusher_token_creator" {
  count = local.is_event ? 1 : 0

  service_account_id = google_service_account.pusher[0].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

resource "google_pubsub_subscription" "push" {
  count = local.is_event ? 1 : 0

  project = var.project_id
  name    = "${var.trigger_topic}-to-${var.name}"
  topic   = var.topic_ids[var.trigger_topic]
  labels  = var.labels

  # Longer than one invocation may run, so that a slow success is not redelivered.
  ack_deadline_seconds       = min(600, var.timeout_seconds + 30)
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dynamic "dead_letter_policy" {
    for_each = local.consumes_dead_letter_topic ? [] : [var.dead_letter_topic_id]
    content {
      dead_letter_topic     = dead_letter_policy.value
      max_delivery_attempts = 5
    }
  }

  # functions-framework turns a push to /projects/P/topics/T into the CloudEvent
  # google.cloud.pubsub.topic.v1.messagePublished from topic T.
  push_config {
    push_endpoint = "${local.function_uri}/projects/${var.project_id}/topics/${var.trigger_topic}"

    oidc_token {
      service_account_email = google_service_account.pusher[0].email
      audience              = local.function_uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.pusher,
    google_service_account_iam_member.pusher_token_creator,
  ]
}

# The Pub/Sub service agent must be able to acknowledge a message it forwards
# to the dead-letter topic (publishing there is granted in modules/pubsub).
resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  count = local.is_event && !local.consumes_dead_letter_topic ? 1 : 0

  project      = var.project_id
  subscription = google_pubsub_subscription.push[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
