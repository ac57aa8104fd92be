"""Demo data for a fresh install (`shutter demo`), made through the services the API uses."""
