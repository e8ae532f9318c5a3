"""Telemetry integrations: one module each, each with init_app(app) -> bool."""
