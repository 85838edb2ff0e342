"""Prefect flows and deployments: thin wrappers over engine calls (runs on a server, schedules)."""
