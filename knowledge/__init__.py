"""The knowledge base: load help-center documents, chunk them, embed them, search them.

Nothing heavy happens at import time: torch and sentence-transformers are imported inside
`MiniLMEmbedder.warm_up()`, so `import knowledge` stays cheap for the CLI and for tests.
"""
