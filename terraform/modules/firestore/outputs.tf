output "database_name" {
  description = "The database name the functions use (FLEETOPS_FIRESTORE_DATABASE)."
  value       = google_firestore_database.this.name
}

output "database_id" {
  description = "The database's full resource id."
  value       = google_firestore_database.this.id
}

output "index_ids" {
  description = "The composite indexes, by purpose."
  value = {
    operations_instance_status_created_asc  = google_firestore_index.operations_instance_status_created_asc.id
    operations_instance_status_created_desc = google_firestore_index.operations_instance_status_created_desc.id
    operations_status_created_desc          = google_firestore_index.operations_status_created_desc.id
    operations_instance_created_desc        = google_firestore_index.operations_instance_created_desc.id
  }
}

output "collection_group_fields" {
  description = "Fields indexed for collection-group queries, as collection/field."
  value       = ["${google_firestore_field.incidents_opened_at.collection}/${google_firestore_field.incidents_opened_at.field}"]
}

output "ttl_fields" {
  description = "Fields with a TTL policy, as collection/field."
  value       = ["${google_firestore_field.processed_events_expire_at.collection}/${google_firestore_field.processed_events_expire_at.field}"]
}
