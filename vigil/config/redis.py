"""Redis settings: where the gallery and the event streams live."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vigil.config.base import VigilModel


class RedisConfig(VigilModel):
    """Which Redis server to use, or how to run the embedded one."""

    url: str | None = Field(
        None,
        description=(
            "Redis URL, e.g. `redis://localhost:6379/0` or `unix:///run/redis.sock`. "
            "When unset, the conventional `REDIS_URL` environment variable is used; when that is "
            "unset too, Vigil runs an embedded Redis server with its data under `home/redis`."
        ),
    )
    frames_url: str | None = Field(
        None,
        description=(
            "Redis URL for the frame bus only (camera frames as JPEGs), e.g. `redis://localhost:6380/0`: "
            'a server with persistence off (`appendonly no`, `save ""`), so that no camera frame is '
            "written to disk. When unset, frames go to an embedded server with no persistence at all "
            "under `home/redis-frames` if `url` is unset too, else to `url` (`vigil run` warns if that "
            "server persists them). Workers on other machines need the same value."
        ),
    )
    embedded_appendfsync: Literal["always", "everysec"] = Field(
        "always",
        description=(
            "How often the embedded server fsyncs its append-only file. `always`: before each "
            "write is acknowledged, so an acknowledged enrolment survives a crash or power loss "
            "(slower writes, ~1 fsync each); `everysec`: once a second, faster, but up to a second "
            "of acknowledged writes can be lost. Ignored when `url` is set."
        ),
    )
