"""The ceiling: an empty Django view with no middleware, no apps and no database, under the same gunicorn."""
