"""llmgw key-service: administers virtual keys, providers, routes and admin tokens.

The edge proxies never read its database: they ask it over NATS (``SUBJECT_KEY_LOOKUP``) and
drop what they cached when a ``KeyChanged`` event arrives.
"""
