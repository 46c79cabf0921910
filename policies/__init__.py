"""Switchboard's policies: the YAML policy file, PII redaction and the streaming output filter.

Importing this package is cheap on purpose: presidio and spaCy are imported only by
`PresidioRedactor.warm_up()`.
"""
