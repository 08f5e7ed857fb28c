# Firestore in native mode, the indexes the queries of
# shared/fleetops/adapters/firestore_store.py need beyond the automatic ones,
# and the TTL policy that expires idempotency records. Collection names are
# those of fleetops.contract.names (ALL_COLLECTIONS) and the adapter's
# subcollections; tests/terraform derives the indexes from the queries and
# checks they are all here.

resource "google_firestore_database" "this" {
  project                           = var.project_id
  name                              = var.database_name
  location_id                       = var.location_id
  type                              = "FIRESTORE_NATIVE"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = var.point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_policy
}

# Queued operations of one instance, oldest first: the next one to start.
resource "google_firestore_index" "operations_instance_status_created_asc" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "operations"

  fields {
    field_path = "instance"
    order      = "ASCENDING"
  }
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "ASCENDING"
  }
}

# Operations of one instance in one status, newest first (fleetops ops list --instance --status).
resource "google_firestore_index" "operations_instance_status_created_desc" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "operations"

  fields {
    field_path = "instance"
    order      = "ASCENDING"
  }
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# Operations in one status, newest first (fleetops ops list --status).
resource "google_firestore_index" "operations_status_created_desc" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "operations"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# Operations of one instance, newest first (fleetops ops list --instance).
resource "google_firestore_index" "operations_instance_created_desc" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "operations"

  fields {
    field_path = "instance"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# Idempotency records ((ce-source, ce-id) keys) expire on their expire_at
# timestamp. The field is not indexed: nothing queries it, and an index on a
# monotonically increasing timestamp would only add write cost.
resource "google_firestore_field" "processed_events_expire_at" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "processed_events"
  field      = "expire_at"

  ttl_config {}

  index_config {}
}

# Incidents opened lately across every instance (instances/*/incidents, a
# collection-group query on opened_at: the remediation safety limits). Automatic
# single-field indexes serve one collection only; this adds the collection-group
# scope and keeps the collection-scope ones.
resource "google_firestore_field" "incidents_opened_at" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "incidents"
  field      = "opened_at"

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "DESCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION_GROUP"
    }
  }
}
