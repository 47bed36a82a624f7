"""`towerlab search --storage journal:PATH | sqlite:///FILE | postgresql://...`: every finished trial of a search
(GA, TPE, random or grid) also goes into an Optuna study in that storage, so that `optuna-dashboard PATH` (or any
Optuna code: `optuna.load_study`) shows it: parameters, fitness, the validation curve as intermediate values,
pruned trials as pruned, failed ones as failed, each with its generation and trial folder as attributes.

The search's own files stay the truth it resumes from (search_state.json, replayed exactly); the study is a mirror
written after each batch. A trial is added once: its generation and place in the batch are its key, so a resumed
search adds only what the storage lacks.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from towerlab import secrets
from towerlab.errors import ConfigError
from towerlab.runs import SearchFolder
from towerlab.search.space import Space, genome_key
from towerlab.search.tpe import _optuna, distributions


def open_storage(spec: str):
    """journal:PATH (Optuna's JournalStorage file), or a database URL Optuna's RDBStorage takes."""
    optuna = _optuna()
    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(spec.removeprefix("journal:")).expanduser()
        if not path.parent.is_dir():
            raise ConfigError(f"--storage {spec}: folder {path.parent} does not exist; create it or choose another")
        if path.is_symlink():  # appending through a link writes wherever it points
            raise ConfigError(f"--storage {spec}: {path} is a symbolic link; give the journal file's own path")
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" in spec:
        return spec  # sqlite:///study.db, postgresql://user@host/db: Optuna opens it
    raise ConfigError(f"--storage {spec!r}: write journal:PATH, sqlite:///FILE or postgresql://USER@HOST/DB")


def claim(study, name: str, folder: SearchFolder, spec: str) -> None:
    """A study belongs to one search folder: another search that would share its name (its --out folder's final
    name) is refused, not merged into it (its trials would be dropped as already there)."""
    mine = str(folder.path.resolve())
    owner = study.user_attrs.get("towerlab_folder")
    if owner is None and study.get_trials(deepcopy=False):
        owner = "(not a towerlab search)"
    if owner not in (None, mine):
        raise ConfigError(
            f"--storage {secrets.mask(spec)}: study {name!r} already holds the trials of another search "
            f"({owner}); give this search another --study name"
        )
    study.set_user_attr("towerlab_folder", mine)


@contextmanager
def said(spec: str, what: str):
    """Any failure of the storage (an unreachable database, a damaged journal line) is one line naming it."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 -- whatever Optuna or its storage raised
        first = secrets.mask(str(e).strip().splitlines()[0][:200]) if str(e).strip() else ""
        raise ConfigError(
            f"--storage {secrets.mask(spec)}: {what} ({type(e).__name__}{': ' + first if first else ''}); "
            f"the search folder keeps every trial: fix the storage and resume"
        ) from None


class StudyMirror:
    def __init__(self, spec: str, name: str, space: Space, maximize: bool, metric: str, folder: SearchFolder):
        optuna = _optuna()
        self.optuna, self.metric, self.folder = optuna, metric, folder
        self.dists = distributions(space)  # a space Optuna cannot express is refused here, before any training
        self.spec = secrets.mask(spec)  # what error lines show: never the database password
        with said(self.spec, "cannot open the study"):
            self.study = optuna.create_study(
                storage=open_storage(spec),
                study_name=name,
                load_if_exists=True,
                direction="maximize" if maximize else "minimize",
            )
            claim(self.study, name, folder, self.spec)
            self.study.set_user_attr("metric", metric)
            self.added = {t.user_attrs.get("towerlab_key") for t in self.study.get_trials(deepcopy=False)}

    def record_batch(self, generation: int, genomes: list[dict], scores: list[float | None]) -> None:
        with said(self.spec, "cannot add the finished trials"):
            self._record(generation, genomes, scores)

    def _record(self, generation: int, genomes: list[dict], scores: list[float | None]) -> None:
        State = self.optuna.trial.TrialState
        for place, (genome, value) in enumerate(zip(genomes, scores)):
            key = f"{generation}:{place}"
            if key in self.added:
                continue
            trial = self.folder.trial(genome_key(genome))
            pruned = trial.pruned() is not None
            state = State.PRUNED if pruned else State.FAIL if value is None else State.COMPLETE
            curve = trial.curve(self.metric)
            self.study.add_trial(
                self.optuna.trial.create_trial(
                    params=genome,
                    distributions=self.dists,
                    state=state,
                    value=None if state == State.FAIL else value,
                    intermediate_values={k: v for k, v in enumerate(curve, start=1)},
                    user_attrs={"towerlab_key": key, "generation": generation, "trial_folder": str(trial.out)},
                )
            )
            self.added.add(key)
