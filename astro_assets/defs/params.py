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
    """Parameter descriptions from the dataclass's numpy-style ``Attributes`` section."""
    docs: dict[str, str] = {}
    lines = (params_cls.__doc__ or "").splitlines()
    names = {f.name for f in dataclasses.fields(params_cls)}
    current = None
    for line in lines:
        stripped = line.strip()
        head = stripped.split(" : ")[0].strip()
        if head in names and (" : " in stripped or stripped == head):
            current = head
            docs[current] = ""
        elif current and stripped:
            docs[current] = (docs[current] + " " + stripped).strip()
        elif current and not stripped:
            current = None
    return docs


def config_class(params_cls: type, *, name: str, extra: dict[str, Any] | None = None) -> type:
    """A ``dg.Config`` subclass with one field per field of the dataclass ``params_cls``.

    ``extra`` adds fields as ``name -> (type, default)`` for settings that are not algorithm
    parameters (for instance a backend choice).
    """
    hints = typing.get_type_hints(params_cls)
    docs = _field_docs(params_cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        fields[f.name] = (
            hints[f.name],
            pydantic.Field(default=default, description=docs.get(f.name) or None),
        )
    for field_name, (field_type, default) in (extra or {}).items():
        fields[field_name] = (field_type, default)
    model = pydantic.create_model(name, __base__=dg.Config, __module__=__name__, **fields)
    model.__doc__ = (params_cls.__doc__ or "").strip().split("\n\n")[0]
    return model


def params_from_config(config: dg.Config, params_cls: type[P]) -> P:
    """The dataclass instance holding the values of ``config`` (tuples restored from lists)."""
    values = {}
    for f in dataclasses.fields(params_cls):
        value = getattr(config, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return params_cls(**values)
