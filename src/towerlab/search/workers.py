"""`towerlab search ... --trials N`: a search that is one Optuna study, shared by every worker that runs the same
command line (several shells, a SLURM array, several machines on one file system or one database).

    towerlab search mlp --space space.yaml --algo tpe --trials 12 --storage journal:/shared/s1.log --study s1 \\
        --out /shared/s1            # run it three times: one study of 12 trials, each trained once

Each worker (and each local slot of `--workers K`: the single-command search is the same mechanism) asks the study
for its next trial, trains it, tells the result; there is no batch barrier, so a free slot takes the next trial at
once. `--trials` is the study's total: trials that ended (complete, pruned, or failed by their own config) count;
a worker that finds the budget spoken for by running trials waits for them, and one that finds it used says the
study is complete. A worker that dies stops beating (a trial attribute written every --heartbeat seconds); after
six missed beats any other worker marks that trial failed and enqueues it again with the same trial folder, so the
retry continues from its checkpoints, and a retry that finds the run finished trains nothing (a trial is never
trained to completion twice; two processes never train one folder: the run's lock). Pruning judges a trial
against the validation curves every worker reported to the study. The GA runs as a sampler over the study
(steady state: parents drawn from the best `population` trials that ended), so every algorithm can have many
workers.

A shared study is not reproducible run to run (which worker asks when decides what the sampler sees): the batch
search without --trials stays the exact, replayable one.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from towerlab.errors import ConfigError
from towerlab.runs import Result, SearchFolder
from towerlab.search.base import rank_value
from towerlab.search.space import Space
from towerlab.search.storage import claim, open_storage, said
from towerlab.search.tpe import _optuna, distributions

KEY, BEAT, FAILED, SURPLUS = "towerlab_key", "towerlab_heartbeat", "towerlab_failed", "towerlab_surplus"
ALGOS = ("tpe", "random", "ga")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def _table_race(e: BaseException) -> bool:
    """Whether `e` is a worker losing the race to create Optuna's tables on a fresh database: SQLAlchemy's
    IntegrityError (a unique key of the catalogue), or PostgreSQL's DuplicateTable ("relation ... already
    exists", a ProgrammingError)."""
    text = type(e).__name__ + repr(e)
    return "IntegrityError" in text or "DuplicateTable" in text or "already exists" in text


@dataclass
class Budget:
    ended: int  # complete, pruned, or failed by their own config or training
    running: int
    waiting: int  # enqueued to be retried: the next ask takes them first


class SharedStudy:
    """The study every worker of one search shares: its budget, the next trial, the retries of dead workers."""

    def __init__(
        self,
        spec: str,
        name: str,
        space: Space,
        folder: SearchFolder,
        *,
        algo: str,
        trials: int,
        maximize: bool,
        metric: str,
        seed: int,
        heartbeat: float,
        ga: dict | None = None,
    ):
        if algo not in ALGOS:
            raise ConfigError(f"--trials shares one study among workers for --algo {', '.join(ALGOS)}, not {algo}")
        optuna = _optuna()
        self.optuna, self.State, self.trials, self.metric = optuna, optuna.trial.TrialState, trials, metric
        self.space, self.dists, self.heartbeat, self.spec = space, distributions(space), heartbeat, spec
        with said(spec, "cannot open the study"):
            self.study = self._open(name, maximize, self._sampler(algo, seed, space, maximize, ga or {}))
            claim(self.study, name, folder, spec)
            self._agree("algo", algo)
            self._agree("trials", trials)
            self.study.set_user_attr("metric", metric)

    def _open(self, name: str, maximize: bool, sampler, tries: int = 5):
        """The study, created by whichever worker comes first. Workers that start together on a fresh database
        race to create Optuna's tables (a loser gets a unique-key violation, or PostgreSQL's "relation already
        exists" when both issued CREATE TABLE at once): the others try again once they exist."""
        for attempt in range(tries):
            try:
                return self.optuna.create_study(
                    storage=open_storage(self.spec),
                    study_name=name,
                    load_if_exists=True,
                    direction="maximize" if maximize else "minimize",
                    sampler=sampler,
                )
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001 -- the table race (see above) is retried; the last one is said
                if attempt == tries - 1 or not _table_race(e):
                    raise
                time.sleep(0.5 * (attempt + 1))

    def _sampler(self, algo: str, seed: int, space: Space, maximize: bool, ga: dict):
        # TPE: every worker draws its own numbers (the same seed everywhere would propose the same trial twice)
        mine = seed * 1_000_003 + os.getpid() % 1_000_003
        if algo == "tpe":
            return self.optuna.samplers.TPESampler(seed=mine, constant_liar=True)
        from towerlab.search.ga_sampler import GeneticSampler, NumberedRandom

        if algo == "random":  # trial n's genome whoever asks: one worker or ten train the same genomes
            return NumberedRandom(space, self.dists, seed=seed)
        return GeneticSampler(space, self.dists, maximize=maximize, seed=seed, **ga)

    def _agree(self, what: str, value) -> None:
        """Every worker of a study runs the same search: another --algo or --trials is refused in one line."""
        attr = f"towerlab_{what}"
        held = self.study.user_attrs.get(attr)
        if held is None:
            self.study.set_user_attr(attr, value)
        elif held != value:
            raise ConfigError(f"the study's workers run --{what} {held}; this one says {value}: give the same")

    # -- the budget ------------------------------------------------------------------------------------------------
    def _counts(self, t) -> bool:
        """Whether trial t takes a place of the budget (a dead worker's trial and a surplus one do not)."""
        S = self.State
        return t.state in (S.COMPLETE, S.PRUNED, S.RUNNING, S.WAITING) or (t.state == S.FAIL and FAILED in t.user_attrs)

    def budget(self) -> Budget:
        trials = self.study.get_trials(deepcopy=False)
        ended = sum(t.state.is_finished() and self._counts(t) for t in trials)
        running = sum(t.state == self.State.RUNNING for t in trials)
        return Budget(ended, running, sum(t.state == self.State.WAITING for t in trials))

    def ask(self):
        """The next trial, or None when it came too late: another worker's took the last place (it is marked
        failed as surplus, which takes no place)."""
        with said(self.spec, "cannot ask the study for a trial"):
            trial = self.study.ask(self.dists)
            places = sorted(t.number for t in self.study.get_trials(deepcopy=False) if self._counts(t))
            if trial.number not in places[: self.trials]:
                trial.set_user_attr(SURPLUS, True)
                self.study.tell(trial, state=self.State.FAIL)
                return None
            if KEY not in trial.user_attrs:  # a retry keeps the folder of the trial it retries
                trial.set_user_attr(KEY, f"t{trial.number:05d}")
            return trial

    def genome(self, trial) -> dict:
        return {p.name: trial.params[p.name] for p in self.space.params}

    # -- the trials' lives -----------------------------------------------------------------------------------------
    @contextmanager
    def beating(self, trial):
        """The trial's heartbeat while the block runs, from a thread of its own."""
        stop = threading.Event()

        def beat():
            said = False
            while not stop.wait(self.heartbeat):
                try:
                    trial.set_user_attr(BEAT, time.time())
                except Exception as e:  # noqa: BLE001 -- a missed beat; six in a row and another worker retries it
                    if not said:  # once per trial: a storage that stays away would otherwise say it every beat
                        print(
                            f"towerlab: warning: trial {trial.number}: heartbeat not written ({first_line(e)}); "
                            f"after six missed beats another worker retries the trial",
                            file=sys.stderr,
                            flush=True,
                        )
                        said = True

        trial.set_user_attr(BEAT, time.time())
        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def reap(self) -> list[str]:
        """Trials whose worker stopped beating: failed, and each enqueued once more with its folder (only the
        worker that failed it enqueues: the storage refuses the others' update). Returns their folders."""
        now, retried = time.time(), []
        for t in self.study.get_trials(deepcopy=False, states=(self.State.RUNNING,)):
            last = t.user_attrs.get(BEAT, t.datetime_start.timestamp() if t.datetime_start else now)
            if now - last < 6 * self.heartbeat:
                continue
            try:  # Optuna has no public call that fails another worker's trial: its storage's own, as its
                # heartbeat code (RDB only) does; the storage refuses the update to a trial that ended meanwhile
                self.study._storage.set_trial_state_values(t._trial_id, self.State.FAIL)
            except (self.optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
                continue  # another worker was first, or the trial ended just now
            self.study.enqueue_trial(self.genome(t), user_attrs={KEY: t.user_attrs[KEY]}, skip_if_exists=False)
            retried.append(t.user_attrs[KEY])
        return retried

    def tell(self, trial, result: Result, curve: list[float]) -> bool:
        """The trial's end in the study: complete with its fitness, pruned, or failed (its own failure: it takes its
        place). False when the study had given the trial up for dead meanwhile (its retry reads the same run)."""
        S = self.State
        value = result.fitness(self.metric)
        for k, v in enumerate(curve, start=1):
            trial.report(v, k)
        try:
            if result.status == "pruned":
                self.study.tell(trial, state=S.PRUNED)
            elif value is None:
                trial.set_user_attr(FAILED, result.error[:500] or result.status)
                self.study.tell(trial, state=S.FAIL)
            else:
                self.study.tell(trial, value)
        except (self.optuna.exceptions.UpdateFinishedTrialError, ValueError):
            return False
        return True

    def stop_beating_now(self, trial) -> None:
        """A worker that stops (Ctrl-C, a signal) leaves its trial to the next one at once, not after the grace."""
        try:
            trial.set_user_attr(BEAT, 0.0)
        except Exception as e:  # noqa: BLE001 -- on the way out: say it, the grace period still applies
            print(
                f"towerlab: warning: trial {trial.number} left running in the study ({first_line(e)}); another "
                f"worker retries it after {6 * self.heartbeat:g} s without a heartbeat",
                file=sys.stderr,
                flush=True,
            )

    def curves(self) -> list[list[float]]:
        """The validation curves every worker reported, for the pruner."""
        done = self.study.get_trials(deepcopy=False, states=(self.State.COMPLETE, self.State.PRUNED))
        return [[t.intermediate_values[k] for k in sorted(t.intermediate_values)] for t in done]

    def ended(self) -> list:
        """The trials that took a place and ended, in the order they were asked for."""
        return [t for t in self.study.get_trials(deepcopy=False) if t.state.is_finished() and self._counts(t)]

    def best(self, maximize: bool):
        done = [t for t in self.ended() if t.state == self.State.COMPLETE]
        return max(done, key=lambda t: rank_value(t.value, maximize)) if done else None


def work(shared: SharedStudy, executor, make_trial, pruner, stop: threading.Event, active: dict, poll=1.0) -> None:
    """One worker slot: ask, train, tell, until the study's budget is used. make_trial(key, genome) -> Trial;
    active: the slot's trial while it trains (what an interrupted worker gives up at once)."""
    while not stop.is_set():
        shared.reap()
        budget = shared.budget()
        if budget.ended >= shared.trials:
            return
        if budget.ended + budget.running >= shared.trials:  # the last places are other workers' trials: wait
            stop.wait(poll)
            continue  # (a retry waiting in the queue is not a reason to wait: the next ask takes it)
        trial = shared.ask()
        if trial is None:
            continue
        folder_trial = make_trial(trial.user_attrs[KEY], shared.genome(trial))
        judge = None
        if pruner is not None:  # against every worker's curves, as the study holds them now
            judge = copy.copy(pruner)
            judge.reference = shared.curves()
        active[threading.get_ident()] = trial
        try:
            with shared.beating(trial):
                result = executor.run([folder_trial], pruner=judge)[0]
        except BaseException:
            shared.stop_beating_now(trial)
            raise
        finally:
            active.pop(threading.get_ident(), None)
        if not shared.tell(trial, result, folder_trial.curve(shared.metric)):
            print(f"{folder_trial.name}: given up for dead meanwhile; its retry reads the finished run", flush=True)


def run_workers(shared: SharedStudy, executors: list, make_trial, pruner) -> None:
    """`work` on each of this machine's slots at once (threads: the training happens in each trial's process)."""
    stop, errors, active = threading.Event(), [], {}

    def slot(executor):
        try:
            work(shared, executor, make_trial, pruner, stop, active)
        except BaseException as e:  # noqa: BLE001 -- handed to the main thread, which raises the first
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=slot, args=(ex,), daemon=True) for ex in executors]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except BaseException:  # Ctrl-C, a signal: the trials' processes checkpoint; the next worker retries them now
        for trial in list(active.values()):
            shared.stop_beating_now(trial)
        raise
    finally:
        stop.set()
    if errors:
        raise errors[0]
