import pytest

from backends.memory import MemoryBackend
from tests.backends.conformance import Conformance


class TestMemoryBackend(Conformance):
    large_object_size = 1 << 20

    @pytest.fixture
    def backend(self):
        return MemoryBackend()

    @pytest.fixture
    def leave_leftover(self, backend):
        return backend.interrupted_put
