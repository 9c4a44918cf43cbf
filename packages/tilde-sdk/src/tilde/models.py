"""Compatibility module: the SDK's entity, collection and value types under one import.

A pure re-export of classes defined in the distributions (so ``isinstance`` checks agree whichever module a
class is imported from). `Repository` here is the full SDK's composed handle. The admin types not listed yet
(groups, policies, roles, agents, API keys, secrets, connectors and imports) are added with the admin
release that implements them.
"""

from tilde._composed import Repository
from tilde.admin import Member, Members, Organization, Organizations
from tilde.compute import (
    LogStream,
    OutputStream,
    RunResult,
    Sandbox,
    Sandboxes,
    SandboxStatus,
    SandboxTrigger,
    SandboxTriggerCondition,
    SandboxTriggerConfig,
    SandboxTriggerRun,
    SandboxTriggerRuns,
    SandboxTriggers,
    Shell,
)
from tilde.core.credentials import SandboxCredentials, SandboxCredentialsProvider
from tilde.data import (
    Commit,
    CommitResult,
    Commits,
    CopyObjectResult,
    Entry,
    EntryRecord,
    ListingEntry,
    ObjectMetadata,
    PutObjectResult,
    ReadOnlyObjects,
    Repositories,
    Session,
    SessionObjects,
    SourceMetadata,
)

__all__ = [
    "Commit",
    "CommitResult",
    "Commits",
    "CopyObjectResult",
    "Entry",
    "EntryRecord",
    "ListingEntry",
    "LogStream",
    "Member",
    "Members",
    "ObjectMetadata",
    "Organization",
    "Organizations",
    "OutputStream",
    "PutObjectResult",
    "ReadOnlyObjects",
    "Repositories",
    "Repository",
    "RunResult",
    "Sandbox",
    "SandboxCredentials",
    "SandboxCredentialsProvider",
    "SandboxStatus",
    "SandboxTrigger",
    "SandboxTriggerCondition",
    "SandboxTriggerConfig",
    "SandboxTriggerRun",
    "SandboxTriggerRuns",
    "SandboxTriggers",
    "Sandboxes",
    "Session",
    "SessionObjects",
    "Shell",
    "SourceMetadata",
]
