"""gunicorn settings, read from the working directory by `gunicorn wsgi:app`."""
import os

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 60
# %(U)s is the path without its query string: v1 clients send access_token
# in the query, and secrets never reach logs.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'
