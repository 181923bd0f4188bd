"""How batches of scan ids reach :func:`worker.scoring.process_scans`: the embedded runner
(embedded.py: ``usqa run``, threads in one process, no broker) and the Celery app
(celery_app.py: ``usqa ingest`` + ``usqa worker``, a Redis broker). Both use the one retry
policy of :mod:`worker.scoring.retry`."""
