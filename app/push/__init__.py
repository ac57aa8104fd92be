"""Push notifications over APNs' HTTP/2 provider API (apns.py) for activity (service.py)."""
