"""Vanilla django-oauth-toolkit (bench/run.py): a startproject-shaped project that mounts DOT's URLs."""
