"""towerlab serve: watch SQL tables, grade new rows with a trained model, write the grades back.

settings.py  the YAML config, validated (pydantic); credentials from the environment
kinds.py     the payload kinds (columns, text, blob, image, path): what each needs, how a row becomes an image
payload.py   what the kinds share: row errors, normalisation, paths under a root, checks against table and model
store.py     every SQL statement: outcome and state tables, reading new rows, claiming, writing results
scorer.py    the model of a run directory, one forward pass per batch
startup.py   every check before the first row: model, databases, sources, state; LISTEN threads
worker.py    the polling loop: schedules, batches, retries, signals
grading.py   one batch: rows -> inputs -> the model -> outcomes and images
http.py      liveness, readiness and Prometheus metrics
"""
