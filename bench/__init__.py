"""End-to-end benchmark of the broker back office: `python -m bench` (or `make bench`).

One run brings up its own isolated stack (embedded Postgres and Redis under var/bench/, its own web
server and Celery worker), measures raw database baselines, the pure matching engine, API order
acceptance, matching throughput on one hot book and POST-to-fill latency, prints a Markdown table and
tears everything down again. docs/performance.md explains each figure.
"""
