"""Dagster Config classes mirrored from the science layer's parameter dataclasses.

Each algorithm's parameters are defined once, as a frozen dataclass in ``science/`` with its
defaults and documentation; the run configuration shown in the Dagster launchpad is generated
from it, so the two can never drift apart.
"""

import dataclasses
import typing
from typing import Any, TypeVar

import dagster as dg
import pydantic

P = TypeVar("P")


def _field_docs(params_cls: type) -> dict[str, str]:
    """Parameter descriptions from the dataclass's numpy-style ``Attributes`` section; an
    entry may document several fields at once (``low, high : float``)."""
    docs: dict[str, str] = {}
    lines = (params_cls.__doc__ or "").splitlines()
    names = {f.name for f in dataclasses.fields(params_cls)}
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        heads = [head.strip() for head in stripped.split(" : ")[0].split(",")]
        if all(head in names for head in heads) and (" : " in stripped or stripped in names):
            current = heads
            docs.update(dict.fromkeys(current, ""))
        elif current and stripped:
            for name in current:
                docs[name] = (docs[name] + " " + stripped).strip()
        elif current and not stripped:
            current = []
    return docs


def _config_type(hint: Any) -> Any:
    """Dagster config has lists, not tuples: ``tuple[X, ...]`` becomes ``list[X]``."""
    if typing.get_origin(hint) is tuple:
        (item, *_rest) = typing.get_args(hint)
        return list[item]
    return hint


def config_class(
    *params_classes: type, name: str, doc: str, extra: dict[str, Any] | None = None
) -> type:
    """A ``dg.Config`` subclass with one field per field of each dataclass in ``params_classes``.

    ``extra`` adds fields as ``name -> (type, default, description)`` for settings that are not
    algorithm parameters (for instance a backend choice). Field names must be unique.
    """
    fields: dict[str, Any] = {}
    for params_cls in params_classes:
        hints = typing.get_type_hints(params_cls)
        docs = _field_docs(params_cls)
        for f in dataclasses.fields(params_cls):
            if f.name in fields:
                raise ValueError(f"parameter {f.name!r} is defined twice in {name}")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if isinstance(default, tuple):
                default = list(default)
            fields[f.name] = (
                _config_type(hints[f.name]),
                pydantic.Field(default=default, description=docs.get(f.name) or None),
            )
    for field_name, (field_type, default, description) in (extra or {}).items():
        if field_name in fields:
            raise ValueError(f"parameter {field_name!r} is defined twice in {name}")
        fields[field_name] = (field_type, pydantic.Field(default=default, description=description))
    model = pydantic.create_model(name, __base__=dg.Config, __module__=__name__, **fields)
    model.__doc__ = doc
    return model


def params_from_config(config: dg.Config, params_cls: type[P]) -> P:
    """The dataclass instance holding the values of ``config`` (tuples restored from lists)."""
    values = {}
    for f in dataclasses.fields(params_cls):
        value = getattr(config, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return params_cls(**values)
