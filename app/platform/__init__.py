"""What every domain may use, and that knows no domain: the cache, the embedded
Redis, logging and metrics, JSON, text parsing, paging, the change clocks,
the after-commit unit and the transactional outbox.

It imports nothing of app's domains (import-linter holds that: .importlinter).
"""
