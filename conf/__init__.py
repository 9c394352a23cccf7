"""Typed, validated environment profiles: the only place environments differ."""

from conf.profile import (
    CLOUDWATCH_RETENTION_DAYS,
    PROFILE_DIR,
    Profile,
    ProfileError,
    known_environments,
    load_profile,
    load_profile_file,
)

__all__ = [
    "CLOUDWATCH_RETENTION_DAYS",
    "PROFILE_DIR",
    "Profile",
    "ProfileError",
    "known_environments",
    "load_profile",
    "load_profile_file",
]
