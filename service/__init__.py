"""Partage's service layer: HTTP API, persistence, jobs and the command line."""
