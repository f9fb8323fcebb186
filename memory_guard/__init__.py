"""Memory guard: ingest-time scanning of documents and memory writes before they reach a vector store.

Not built yet: tracked by its own issue. The package exists so the layout and import rules are fixed.
"""
