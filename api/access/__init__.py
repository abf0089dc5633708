"""Governed access: who may do what, users, extracts, reports, safe CSV."""
