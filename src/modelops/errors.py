"""The project's error hierarchy: every failure a user can fix has a named type."""

from __future__ import annotations


class ModelopsError(Exception):
    """Base class of the errors modelops raises on purpose."""


class ConfigError(ModelopsError):
    """The configuration in conf/ is missing something or contradicts itself."""


class DataContractError(ModelopsError):
    """Input data breaks the data contract declared in conf."""


class SourceWindowError(ModelopsError):
    """The production source has no usable partitions for the requested window."""


class DeploymentRejected(ModelopsError):
    """The deployment gate refused the candidate model: nothing is registered."""


class AccessPolicyError(ModelopsError):
    """A run tried to read, write or move an alias outside its env's access policy."""


class PromotionError(ModelopsError):
    """Promotion to prod cannot proceed (no challenger, or it does not reproduce)."""


def modelops_cause(error: BaseException) -> ModelopsError | None:
    """The ModelopsError behind an error (Kedro wraps errors raised in datasets)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ModelopsError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def positive_days(value: object, key: str, meaning_of_null: str, hint: str) -> None:
    """Refuse ``value`` unless it is a whole number of days >= 1 or None.

    Args:
        value: The configured value.
        key: Its dotted conf key, for the message.
        meaning_of_null: What null means there, for the message.
        hint: How to fix it (the conf file, or the --params to pass).

    Raises:
        ConfigError: ``value`` is a bool, not an int, or below 1.
    """
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < 1
    ):
        raise ConfigError(
            f"{key} is {value!r}; expected a positive number of days, or null "
            f"{meaning_of_null}.\nHint: {hint}"
        )
