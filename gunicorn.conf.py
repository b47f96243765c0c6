"""Gunicorn settings of the web service. Each can be overridden from the environment."""

from __future__ import annotations

import os

bind = f"{os.environ.get('API_HOST', '0.0.0.0')}:{os.environ.get('API_PORT', '8000')}"

# Threaded workers: an ingest request spends most of its time waiting for PostgreSQL to
# flush its commit to disk. While one thread waits, others run, and PostgreSQL flushes the
# commits of all waiting requests at once, so throughput grows with concurrency.
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
workers = int(os.environ.get("WEB_WORKERS", (os.cpu_count() or 1) + 1))
threads = int(os.environ.get("WEB_THREADS", "8"))
# Recycle workers now and then so that no slow leak can grow without bound.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "100000"))
max_requests_jitter = max_requests // 10
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 30
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG", "").lower() in {"1", "true", "yes"} else None
