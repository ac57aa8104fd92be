"""Real-time subscriptions: callbacks told about new media (subscriptions.py), over HTTP
that never reaches an internal address (callbacks.py)."""
