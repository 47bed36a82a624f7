"""The service's config file, validated on load with one clear line per mistake.

    databases:
      default: postgresql+psycopg://grader:${FACTORY_DB_PASSWORD}@db.example/factory   # ${VAR}: from the environment
    model: runs/mnist-20261123-101500
    image_dir: /var/lib/towerlab/images
    sources:
      - name: line1
        table: measurements
        key_column: id
        payload: {kind: text, column: values, delimiter: ",", height: 28, width: 28}
        interval_s: 2
        batch_size: 256

Table and column names are checked against a strict identifier pattern: they end up in SQL, where a bound
parameter cannot stand for a name, so nothing but letters, digits and underscores gets there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from towerlab.config import load_yaml
from towerlab.errors import ConfigError

# matched with fullmatch: `$` alone would also match before a final newline ("m\n" would pass)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def identifier(value: str) -> str:
    """A plain SQL identifier, optionally schema-qualified (schema.table), that is no reserved word."""
    from sqlalchemy.sql.compiler import RESERVED_WORDS

    parts = value.split(".")
    if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, _; at most 63 characters)")
    reserved = [p for p in parts if p.lower() in RESERVED_WORDS]
    if reserved:
        raise ValueError(
            f"{value!r} is an SQL reserved word ({reserved[0]}); rename the column or table, or read it through a view"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Payload(_Strict):
    kind: str = Field(description="how a row holds the input: columns, text, blob, image or path (serve/kinds.py)")
    columns: list[str] = Field(
        default_factory=list, description="kind=columns: height*width numeric columns, row-major"
    )
    column: str | None = Field(
        None,
        description="kind=text|blob|image|path: the column holding the values, the "
        "PNG/JPEG bytes (a BLOB or bytea) or the image file's path",
    )
    delimiter: str = Field(",", min_length=1)
    height: int | None = Field(None, gt=0, description="kind=columns|text|blob: rows of the matrix")
    width: int | None = Field(None, gt=0, description="kind=columns|text|blob: columns of the matrix")
    root: str | None = Field(
        None,
        description="kind=path: the folder the paths are read under; a path that leaves "
        "it (.., an absolute path elsewhere, a link out) is an error outcome",
    )
    resize: bool = Field(
        False,
        description="resize a payload whose height x width differs from the model's input "
        "(otherwise such a row is an error outcome naming both sizes)",
    )

    @field_validator("columns")
    @classmethod
    def _idents(cls, v: list[str]) -> list[str]:
        return [identifier(c) for c in v]

    @field_validator("column")
    @classmethod
    def _ident(cls, v: str | None) -> str | None:
        return identifier(v) if v is not None else v

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        from towerlab.serve.kinds import KINDS

        if v not in KINDS:
            raise ValueError(f"kind {v!r} is not one of {', '.join(KINDS)}")
        return v

    @property
    def pictures(self) -> bool:
        """Image files (bytes or paths), decoded at their own size and channels; else a matrix of numbers."""
        from towerlab.serve.kinds import kind_of

        return kind_of(self).pictures

    @model_validator(mode="after")
    def _shape(self) -> Payload:
        from towerlab.serve.kinds import kind_of

        kind_of(self).check(self)
        return self

    def sql_columns(self) -> list[str]:
        from towerlab.serve.kinds import kind_of

        return kind_of(self).columns(self)


class Normalize(_Strict):
    kind: Literal["none", "minmax", "fixed"] = "minmax"
    offset: float = 0.0
    scale: float = 1.0

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale must not be 0")
        return v


class Source(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    database: str = "default"
    table: str
    key_column: str
    payload: Payload
    normalize: Normalize = Normalize()
    interval_s: float = Field(5.0, gt=0)
    batch_size: int = Field(256, gt=0)
    max_wait_s: float = Field(
        0.0, ge=0, description="a batch smaller than batch_size waits at most this long for more rows"
    )
    lag: int = Field(
        0,
        ge=0,
        description="also re-read this many ids behind the watermark (not needed for exactly "
        "once: gaps below the watermark are tracked and re-read until they close)",
    )
    gap_wait_s: float = Field(
        600.0,
        gt=0,
        description="databases other than PostgreSQL: how long ids below the "
        "watermark with no row are re-read before they are given up (with a warning naming them)",
    )
    notify: bool = Field(
        False,
        description="PostgreSQL: wake up on a trigger's NOTIFY when rows commit, not only "
        "every interval_s (create the trigger with `towerlab serve CONFIG --install-trigger`)",
    )
    mode: Literal["watermark", "claim"] = "watermark"
    status_column: str | None = None
    pending_value: str = "new"
    done_value: str = "done"

    @field_validator("table", "key_column", "status_column")
    @classmethod
    def _idents(cls, v: str | None) -> str | None:
        return identifier(v) if v is not None else v

    @model_validator(mode="after")
    def _claim(self) -> Source:
        if self.mode == "claim" and not self.status_column:
            raise ValueError(
                "mode=claim needs status_column: the column the service sets from pending_value to done_value"
            )
        return self


class ServeSettings(_Strict):
    databases: dict[str, str]
    model: str
    checkpoint: Literal["last", "best"] = "last"
    reload: bool = Field(False, description="load a newer checkpoint the run directory points at, between batches")
    reload_check_s: float = Field(2.0, gt=0, description="with reload: how often the checkpoint pointer is read")
    sources: list[Source] = Field(min_length=1)
    outcome_table: str = "towerlab_outcome"
    state_table: str = "towerlab_state"
    gap_table: str = "towerlab_gap"
    image_dir: str | None = None
    shutdown_timeout_s: float = Field(30.0, gt=0)

    @field_validator("outcome_table", "state_table", "gap_table")
    @classmethod
    def _idents(cls, v: str) -> str:
        return identifier(v)

    @model_validator(mode="before")
    @classmethod
    def _one_database(cls, data):
        if isinstance(data, dict) and "database" in data and "databases" not in data:
            data = {k: v for k, v in data.items() if k != "database"} | {"databases": {"default": data["database"]}}
        return data

    @model_validator(mode="after")
    def _references(self) -> ServeSettings:
        names = [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique; repeated: {', '.join(sorted(dup))}")
        for s in self.sources:
            if s.database not in self.databases:
                raise ValueError(
                    f"source {s.name}: database {s.database!r} is not one of databases: {', '.join(self.databases)}"
                )
        own = {"outcome_table": self.outcome_table, "state_table": self.state_table, "gap_table": self.gap_table}
        if len(set(t.lower() for t in own.values())) < len(own):
            raise ValueError(
                f"outcome_table, state_table and gap_table must be three tables; got {', '.join(own.values())}"
            )
        for s in self.sources:
            clash = next((k for k, t in own.items() if t.lower() == s.table.lower()), None)
            if clash:
                raise ValueError(
                    f"source {s.name}: table {s.table} is also the {clash}; the service writes its own "
                    f"tables and reads yours: give them different names"
                )
        return self


def _env(text: str, where: str) -> str:
    def sub(m: re.Match) -> str:
        if m.group(1) not in os.environ:
            raise ConfigError(
                f"{where}: environment variable {m.group(1)} is not set; export it before starting the service"
            )
        return os.environ[m.group(1)]

    return _ENV.sub(sub, text)


def expand_env(url: str, where: str) -> str:
    """${VAR} -> the environment's value, so passwords never have to be written in the file.

    The URL is split into its parts first and each part gets its own values, which the URL is then rebuilt from
    (user name and password percent-encoded): a password holding @, %, / or : stays the password, never becomes
    part of the host name. A value that is one ${VAR} alone is a whole URL from the environment, taken as written."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if _ENV.fullmatch(url.strip()):
        return _env(url.strip(), where)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{where}: not a database URL (dialect+driver://user:password@host/db, or ${{VAR}} holding one)"
        ) from None
    parts = {
        k: _env(v, where) if isinstance(v, str) else v
        for k, v in {
            "username": parsed.username,
            "password": parsed.password,
            "host": parsed.host,
            "database": parsed.database,
        }.items()
    }
    query = {
        k: _env(v, where) if isinstance(v, str) else tuple(_env(x, where) for x in v) for k, v in parsed.query.items()
    }
    return parsed.set(**parts, query=query).render_as_string(hide_password=False)


def _lines(err: ValidationError, path: Path) -> str:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = (
            "unknown field; remove it or fix its spelling"
            if e["type"] == "extra_forbidden"
            else e["msg"].removeprefix("Value error, ")
        )
        out.append(f"{path}: {loc}: {msg}")
    return "\n".join(out)


def load(path: str | Path) -> ServeSettings:
    """Read and validate; every mistake is one line of the ConfigError."""
    path = Path(path)
    try:
        settings = ServeSettings.model_validate(load_yaml(path))
    except ValidationError as e:
        raise ConfigError(_lines(e, path)) from None
    settings.databases = {k: expand_env(v, f"{path}: databases.{k}") for k, v in settings.databases.items()}
    return settings
