"""Durable state of pedfrac: the SQL database and the file archive. Imports nothing of ours."""
