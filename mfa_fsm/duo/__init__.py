"""Duo Auth API v2: request signing, request builders and reply parsing."""
