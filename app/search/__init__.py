"""Search: media and locations by area and time, users and tags by prefix.

interface.py (the backend contract and its documents), service.py (SearchService:
documents from the database, results filtered by who may see them),
redis_backend.py (Redis GEO and sorted sets), solr_backend.py (Solr via pysolr).
"""
