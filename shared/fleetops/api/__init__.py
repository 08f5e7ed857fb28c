"""The engineers' interface: a versioned REST API, its OpenAPI document, and a dashboard."""
