"""Fault injection: the real app under gunicorn while its vendors fail (suite, load generator, `make soak`)."""
