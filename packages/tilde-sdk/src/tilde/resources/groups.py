"""Compatibility module: groups (`tilde.admin.groups`)."""

from tilde.admin.groups import EffectiveGroup, Group, GroupMember, GroupMembers, Groups

__all__ = ["EffectiveGroup", "Group", "GroupMember", "GroupMembers", "Groups"]
