"""Local stack for development and tests: real NATS and PostgreSQL, started without Docker."""
