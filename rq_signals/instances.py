"""Model instances in a payload: by reference with a snapshot, refetched on the worker, or rebuilt.

A model instance (tag ``model``) carries its label, pk, database alias and a snapshot of the concrete
fields that are loaded (attname -> value, so foreign keys by id; deferred fields are left out, never
loaded). On the worker the instance is:

- fetched fresh from its database (``mode: "ref"``, the default) through the base manager, as
  ``refresh_from_db`` does, so the receiver sees what was committed, not the snapshot. If the row
  is gone, ``missing`` decides: ``"skip"`` raises `SkipReceiver` (the job logs it and succeeds),
  ``"snapshot"`` rebuilds it from the snapshot, ``"fail"`` raises `MissingInstance`;
- rebuilt from the snapshot for ``pre_delete``/``post_delete`` (``mode: "deleted"``): pk set,
  ``_state.adding`` False, ``_state.db`` the alias;
- rebuilt unsaved (``mode: "unsaved"``) for an instance with no pk, allowed in ``pre_save`` only.

Snapshot fields the model no longer has (a deploy between send and run) are ignored; fields it
gained are deferred. A model class (tag ``model_class``) travels as its label.

`InstanceEncoding` and `InstanceDecoding` are the instance halves of the payload codec's walk: they
are mixed into the encoder and decoder of `rq_signals.payload`, whose ``encode``/``decode`` they call
for the pk and each field.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final, Literal

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist
from django.db import connections, models, router
from django.db.models import DEFERRED

from rq_signals.exceptions import MissingInstance, SkipReceiver
from rq_signals.values import Undecodable, Unencodable, expect, short_repr, tagged

Missing = Literal["skip", "snapshot", "fail"]

DELETE_SIGNALS: Final = frozenset({"pre_delete", "post_delete"})
UNSAVED_ALLOWED_SIGNALS: Final = frozenset({"pre_save"})
_MODES: Final = frozenset({"ref", "deleted", "unsaved"})


@dataclass(frozen=True)
class _ModelInfo:
    label: str
    fields: tuple[tuple[str, models.Field[Any, Any]], ...]  # concrete fields, in __init__ order


@functools.cache
def model_info(model: type[models.Model]) -> _ModelInfo:
    """Cached per class: the encoder runs inside save(), so no reflection per call."""
    opts = model._meta
    return _ModelInfo(opts.label, tuple((f.attname, f) for f in opts.concrete_fields))


def installed_model(label: Any) -> type[models.Model]:
    try:
        return apps.get_model(expect(label, str, "a model label"))
    except (LookupError, ValueError) as exc:
        raise Undecodable(f"names model {label!r}, which is not installed ({exc})") from None


class InstanceEncoding:
    """The encoder's instance half; the class it is mixed into sets the flags and does ``encode``."""

    deleting: bool  # a pre_delete/post_delete argument: the row is going, so send a snapshot
    allow_unsaved: bool  # pre_save: an instance without a pk may travel unsaved

    def encode(self, value: Any) -> Any:
        raise NotImplementedError  # the payload encoder's walk

    def _instance(self, obj: models.Model) -> dict[str, Any]:
        info = model_info(type(obj))
        if obj.pk is None:
            if not self.allow_unsaved:
                raise Unencodable(
                    obj,
                    "an unsaved instance (its pk is None), which cannot be sent to a job",
                    "save it first, or send its field values",
                )
            mode = "unsaved"
        else:
            mode = "deleted" if self.deleting else "ref"
        loaded = obj.__dict__  # deferred fields are absent: left out, never loaded by a query here
        fields = {}
        for attname, field in info.fields:
            if attname in loaded:
                fields[attname] = self._field(field, loaded[attname], obj)
        state = {"label": info.label, "pk": self.encode(obj.pk), "db": obj._state.db, "mode": mode}
        return tagged("model", {**state, "fields": fields})

    def _field(self, field: models.Field[Any, Any], value: Any, obj: models.Model) -> Any:
        try:
            return self.encode(value)
        except Unencodable as exc:
            try:  # e.g. a FieldFile: its database value (the file's name) is enough for a snapshot
                return self.encode(field.get_prep_value(value))
            except Exception:
                raise exc.inside(f".{field.attname}", obj) from None


class InstanceDecoding:
    """The decoder's instance half; the class it is mixed into sets ``missing`` and does ``decode``."""

    missing: Missing

    def decode(self, data: Any) -> Any:
        raise NotImplementedError  # the payload decoder's walk

    def _instance(self, data: dict[str, Any]) -> models.Model:
        model = installed_model(data.get("label"))
        mode = data.get("mode")
        if mode not in _MODES:
            raise Undecodable(f"instance mode must be one of {sorted(_MODES)}, got {short_repr(mode)}")
        alias = data.get("db") or router.db_for_read(model)
        if expect(alias, str, "a database alias") not in connections:
            raise Undecodable(f"database alias {alias!r} of {model._meta.label} is not in DATABASES")
        pk = self.decode(data.get("pk"))
        snapshot = {name: self.decode(v) for name, v in expect(data.get("fields"), dict, "fields").items()}
        if mode == "ref":
            try:
                # The base manager, as refresh_from_db: a filtering default manager must not hide the row.
                return model._base_manager.db_manager(alias).get(pk=pk)
            except ObjectDoesNotExist:
                gone = MissingInstance(model._meta.label, pk, alias)
                if self.missing == "skip":
                    raise SkipReceiver(str(gone)) from gone
                if self.missing == "fail":
                    raise gone from None
        return _rebuild(model, snapshot, None if mode == "unsaved" else alias)


def _rebuild(model: type[models.Model], snapshot: dict[str, Any], alias: str | None) -> models.Model:
    """An instance as `Model.from_db` builds it; unknown fields ignored, missing ones deferred."""
    instance = model(*[snapshot.get(attname, DEFERRED) for attname, _ in model_info(model).fields])
    instance._state.adding = alias is None
    instance._state.db = alias
    return instance
