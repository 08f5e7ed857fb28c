output "services" {
  description = "The APIs enabled, sorted."
  value       = sort([for service in google_project_service.this : service.service])
}
