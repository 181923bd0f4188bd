"""What IT watches: the Prometheus metrics (metrics.py) and the liveness / readiness checks
and heartbeat files of ``usqa health`` (health.py)."""
