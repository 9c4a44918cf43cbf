"""Identity and access management: the policy language, the action catalogue and built-in policies.

`tilde.server.iam.policy` parses and evaluates policies, `tilde.server.iam.actions` lists the actions they
grant, `tilde.server.iam.builtin` holds the policies every organization starts with, and
`tilde.server.iam.plugins` builds the server's plugin manager (the policy-generator hook).
"""

from tilde.server.iam.actions import ACTIONS, RESOURCE_ARGS, Action, match_actions
from tilde.server.iam.builtin import BUILTIN_POLICIES, BuiltinPolicy
from tilde.server.iam.generate import PolicyGenerationError, generate_policy
from tilde.server.iam.hookspecs import hookimpl
from tilde.server.iam.plugins import make_server_plugin_manager
from tilde.server.iam.policy import (
    ALLOW_ALL,
    CompiledPolicy,
    PolicyError,
    PolicySet,
    PolicySyntaxError,
    Resource,
    parse_policy,
    validate_policy,
)

__all__ = [
    "ACTIONS",
    "ALLOW_ALL",
    "BUILTIN_POLICIES",
    "RESOURCE_ARGS",
    "Action",
    "BuiltinPolicy",
    "CompiledPolicy",
    "PolicyError",
    "PolicyGenerationError",
    "PolicySet",
    "PolicySyntaxError",
    "Resource",
    "generate_policy",
    "hookimpl",
    "make_server_plugin_manager",
    "match_actions",
    "parse_policy",
    "validate_policy",
]
