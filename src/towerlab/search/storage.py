"""`towerlab search --storage journal:PATH | sqlite:///FILE | postgresql://...`: every finished trial of a search
(GA, TPE, random or grid) also goes into an Optuna study in that storage, so that `optuna-dashboard PATH` (or any
Optuna code: `optuna.load_study`) shows it: parameters, fitness, the validation curve as intermediate values,
pruned trials as pruned, failed ones as failed, each with its generation and trial folder as attributes.

The search's own files stay the truth it resumes from (search_state.json, replayed exactly); the study is a mirror
written after each batch. A trial is added once: its generation and place in the batch are its key, so a resumed
search adds only what the storage lacks.
"""

from __future__ import annotations

from pathlib import Path

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
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" in spec:
        return spec  # sqlite:///study.db, postgresql://user@host/db: Optuna opens it
    raise ConfigError(f"--storage {spec!r}: write journal:PATH, sqlite:///FILE or postgresql://USER@HOST/DB")


class StudyMirror:
    def __init__(self, spec: str, name: str, space: Space, maximize: bool, metric: str, folder: SearchFolder):
        optuna = _optuna()
        self.optuna, self.metric, self.folder = optuna, metric, folder
        self.dists = distributions(space)  # a space Optuna cannot express is refused here, before any training
        try:
            self.study = optuna.create_study(storage=open_storage(spec), study_name=name, load_if_exists=True,
                                             direction="maximize" if maximize else "minimize")
        except Exception as e:  # noqa: BLE001 -- an unreachable database, a bad URL: one line naming it
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"--storage {spec}: cannot open the study ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None
        self.study.set_user_attr("metric", metric)
        self.added = {t.user_attrs.get("towerlab_key") for t in self.study.get_trials(deepcopy=False)}

    def record_batch(self, generation: int, genomes: list[dict], scores: list[float | None]) -> None:
        State = self.optuna.trial.TrialState
        for place, (genome, value) in enumerate(zip(genomes, scores)):
            key = f"{generation}:{place}"
            if key in self.added:
                continue
            trial = self.folder.trial(genome_key(genome))
            pruned = trial.pruned() is not None
            state = State.PRUNED if pruned else State.FAIL if value is None else State.COMPLETE
            curve = trial.curve(self.metric)
            self.study.add_trial(self.optuna.trial.create_trial(
                params=genome, distributions=self.dists, state=state,
                value=None if state == State.FAIL else value,
                intermediate_values={k: v for k, v in enumerate(curve, start=1)},
                user_attrs={"towerlab_key": key, "generation": generation, "trial_folder": str(trial.out)}))
            self.added.add(key)
