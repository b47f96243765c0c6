# One image for every Python service of Quantum Fleet: web, Celery worker and beat, and
# the ingest daemons. compose.yaml chooses the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system fleet && useradd --system --gid fleet --home-dir /app fleet
WORKDIR /app

COPY requirements/ requirements/
RUN pip install -r requirements/base.txt -c requirements/constraints.txt

COPY . .
# collectstatic imports the settings, which refuse production without secrets: these
# throwaway values exist only in this build step and never reach a running container.
RUN DJANGO_ENV=production SECRET_KEY=collectstatic-only-not-a-real-secret-000000 \
    JWT_SECRET=collectstatic-only-not-a-real-jwt-secret-0000 ALLOWED_HOSTS=build \
    python manage.py collectstatic --noinput

USER fleet
EXPOSE 8000 5072/tcp 5072/udp
# Workers, threads and the bind address come from gunicorn.conf.py and the environment.
CMD ["gunicorn", "--config", "gunicorn.conf.py", "quantumfleet.wsgi:application"]
