from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.access.backends import pg_schema, redis_prefix


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_schema() as url:
        yield url


@pytest.fixture
def redis_key_prefix() -> Iterator[str]:
    with redis_prefix() as prefix:
        yield prefix
