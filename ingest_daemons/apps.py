from django.apps import AppConfig


class IngestDaemonsConfig(AppConfig):
    name = "ingest_daemons"
    verbose_name = "Ingest daemons"
