"""Flask extensions made once at import and bound to the app in create_app."""
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

# Limits live in Redis (RATELIMIT_STORAGE_URI = REDIS_URL), shared by every API process.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
