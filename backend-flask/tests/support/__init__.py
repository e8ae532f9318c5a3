"""Real-protocol stand-ins for the vendors (OTLP, X-Ray, Rollbar, CloudWatch Logs) and a gunicorn runner.

Everything binds 127.0.0.1 on an ephemeral port by default and is a context manager.
"""
