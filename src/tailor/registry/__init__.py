"""The model registry: named models, numbered versions, aliases, and their artifacts on disk.

``entities`` holds the plain objects callers see; ``refs`` parses ``name``, ``name:3`` and ``name@alias``;
``store`` is the abstract store and ``sql`` its SQLAlchemy implementation (SQLite or PostgreSQL, picked by
URL), with its schema steps in ``migrations``; ``artifacts`` publishes directories atomically behind a
"done" marker; ``service`` ties a store and an artifact store together.
"""
