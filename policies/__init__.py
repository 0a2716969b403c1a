"""Partage's policies: agreements, request validation, and the decision permit/deny → plan.

Pure: no web or ORM imports; plain values in, plain values out.
"""
