"""Compatibility module: policies (`tilde.admin.policies`)."""

from tilde.admin.policies import (
    Attachment,
    EffectivePolicy,
    Policies,
    Policy,
    ValidationError,
    ValidationResult,
)

__all__ = ["Attachment", "EffectivePolicy", "Policies", "Policy", "ValidationError", "ValidationResult"]
