# The APIs every other module needs. Enabling an API is idempotent; on the first
# apply the other modules wait for this one (the example root uses depends_on).
resource "google_project_service" "this" {
  for_each = toset(var.services)

  project                    = var.project_id
  service                    = each.value
  disable_on_destroy         = var.disable_on_destroy
  disable_dependent_services = false
}
