"""WSGI entry point: `gunicorn -c gunicorn.conf.py app:app` or `flask run`."""

from cruddur import create_app

app = create_app()
