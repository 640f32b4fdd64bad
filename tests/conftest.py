from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()
