"""The IDSYNC_ variables the settings accept, derived from the settings model (one definition)."""

from __future__ import annotations

from pydantic import BaseModel

from sync.config import ENV_PREFIX, Settings
from sync.config._settings import IDENTITY_FIELDS


def settings_variables(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> list[str]:
    """Every field of the settings as its environment variable name, sections joined by ``__``."""
    names: list[str] = []
    for name, field in model.model_fields.items():
        if model is Settings and name in IDENTITY_FIELDS:
            continue  # set by the loader, not by a variable
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += settings_variables(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(prefix + name.upper())
    return names
