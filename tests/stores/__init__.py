"""Tests of the flow stores, against real Redis and PostgreSQL servers."""
