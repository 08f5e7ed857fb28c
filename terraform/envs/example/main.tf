# fleetops on one Google Cloud project, composed from the modules.
#
# Run `nox -s package` first: it writes build/functions/NAME/ for every
# function, which modules/function zips and uploads.
#
# Functions are not listed here: every folder functions/NAME/ with a
# function.json is deployed from that manifest (entry_point, signature,
# trigger_topic, roles, memory, timeout_seconds, max_instances), so a new
# function needs no Terraform edit.

locals {
  repo_root     = "${path.module}/../../.."
  functions_dir = "${local.repo_root}/functions"

  function_manifests = {
    for manifest in fileset(local.functions_dir, "*/function.json") :
    dirname(manifest) => jsondecode(file("${local.functions_dir}/${manifest}"))
  }

  http_functions = [for name, manifest in local.function_manifests : name if manifest.signature == "http"]
}

data "google_project" "this" {
  project_id = var.project_id
}

module "apis" {
  source = "../../modules/apis"

  project_id = var.project_id
}

module "firestore" {
  source = "../../modules/firestore"

  project_id        = var.project_id
  location_id       = var.firestore_location
  delete_protection = var.firestore_delete_protection
  deletion_policy   = var.firestore_deletion_policy

  depends_on = [module.apis]
}

module "pubsub" {
  source = "../../modules/pubsub"

  project_id         = var.project_id
  project_number     = data.google_project.this.number
  labels             = var.labels
  request_publishers = ["group:${var.engineers_group}"]

  depends_on = [module.apis]
}

module "build" {
  source = "../../modules/build"

  project_id    = var.project_id
  location      = var.region
  force_destroy = var.force_destroy_sources
  labels        = var.labels

  depends_on = [module.apis]
}

module "function" {
  source   = "../../modules/function"
  for_each = local.function_manifests

  project_id     = var.project_id
  project_number = data.google_project.this.number
  region         = var.region

  name            = each.key
  description     = try(each.value.description, "")
  entry_point     = each.value.entry_point
  signature       = each.value.signature
  trigger_topic   = try(each.value.trigger_topic, null)
  roles           = each.value.roles
  memory          = try(each.value.memory, "256Mi")
  timeout_seconds = try(each.value.timeout_seconds, 60)
  max_instances   = try(each.value.max_instances, 10)
  min_instances   = try(each.value.min_instances, 0)
  ingress         = try(each.value.ingress, null)

  environment = merge(var.function_environment, {
    FLEETOPS_FIRESTORE_DATABASE = module.firestore.database_name
  })

  source_dir               = "${local.repo_root}/build/functions/${each.key}"
  archive_dir              = "${local.repo_root}/build/terraform"
  source_bucket            = module.build.bucket_name
  build_service_account_id = module.build.build_service_account_id

  topic_ids              = module.pubsub.topic_ids
  dead_letter_topic_name = module.pubsub.dead_letter_topic_name
  dead_letter_topic_id   = module.pubsub.dead_letter_topic_id

  # Engineers call the API (http) functions with their own identity token.
  invoker_members = each.value.signature == "http" ? ["group:${var.engineers_group}"] : []

  labels = var.labels

  depends_on = [module.apis, module.build]
}

module "scheduler" {
  source = "../../modules/scheduler"

  project_id = var.project_id
  region     = var.region
  jobs_file  = "${local.repo_root}/shared/fleetops/data/scheduler_jobs.json"
  topic_ids  = module.pubsub.topic_ids
  paused     = var.scheduler_paused

  depends_on = [module.apis]
}

module "monitoring" {
  source = "../../modules/monitoring"

  project_id      = var.project_id
  project_number  = data.google_project.this.number
  alerts_topic_id = module.pubsub.topic_ids["fleetops-alerts"]
  instances       = var.instances

  depends_on = [module.apis]
}
