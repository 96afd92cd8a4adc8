"""Browsing the catalogue in Datasette: metadata (metadata.py), plugin (plugin.py), server (server.py).

Importing this package imports nothing heavy; `catalog serve` imports the server lazily.
"""
