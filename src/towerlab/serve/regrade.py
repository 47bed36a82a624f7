"""`towerlab serve CONFIG --regrade errors`: after a fix of the config or the model, the rows whose outcome is an error
are graded again, once each, before the service goes on.

Each batch reads error outcomes in id order up to the last outcome that existed when the pass began (a row that fails
again is not met twice in one pass), grades their rows, and writes each result over its error in the same
transaction, only where the outcome is still an error: a row is graded ok exactly once, however many passes run,
and a crash repeats the batch, never its effect."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from towerlab.serve.worker import ServeError, Service, SourceState, log


def regrade_errors(service: Service) -> None:
    for st in service.sources:
        try:
            _regrade(service, st)
        except DBAPIError as e:
            raise ServeError(
                f"source {st.src.name}: the database failed during --regrade errors "
                f"({str(getattr(e, 'orig', e)).strip().splitlines()[0]}); run it again: rows already "
                f"graded again keep their new outcome"
            ) from None


def _regrade(service: Service, st: SourceState) -> None:
    store, src = st.store, st.src
    with store.engine.connect() as conn:
        upto = store.last_outcome_id(conn)
    after, seen, ok, gone = 0, 0, 0, 0
    while not service.stop.is_set():
        with store.engine.begin() as conn:
            errors = store.error_outcomes(conn, src, after, upto, src.batch_size)
            if not errors:
                break
            rows = store.rows_by_key(conn, src, [key for _, key in errors])
            outcomes = service.grade(src, rows) if rows else []
            store.replace_errors(conn, src, outcomes)
        after = errors[-1][0]
        seen += len(errors)
        gone += len(errors) - len(rows)  # the source row was deleted: its error outcome stays
        ok += sum(o["status"] == "ok" for o in outcomes)
    log.info(
        "regraded",
        extra={"fields": {"source": src.name, "rows": seen, "ok": ok, "errors": seen - ok - gone, "rows_gone": gone}},
    )
