"""towerlab serve: watch SQL tables, grade new rows with a trained model, write the grades back.

settings.py  the YAML config, validated (pydantic); credentials from the environment
payload.py   a row -> an HxW matrix -> a normalised image
store.py     every SQL statement: outcome and state tables, reading new rows, claiming, writing results
scorer.py    the model of a run directory, one forward pass per batch
worker.py    the polling loop: schedules, batches, retries, signals
http.py      liveness, readiness and Prometheus metrics
"""
