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
