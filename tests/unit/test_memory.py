import pytest

from gpuctl.memory import _glibc, limit_arenas, release_free_memory


def test_at_least_one_arena() -> None:
    with pytest.raises(ValueError, match="at least one malloc arena"):
        limit_arenas(0)


def test_freed_heap_pages_go_back_to_the_system_where_glibc_allocates() -> None:
    # 100 kB blocks, under glibc's mmap threshold, so they come from an arena's heap; every other one
    # stays, so the freed ones are holes that free() cannot give back and only a trim can.
    blocks = [bytearray(100_000) for _ in range(300)]
    kept = blocks[::2]
    del blocks
    released = release_free_memory()
    del kept
    assert released is (_glibc() is not None)
    assert limit_arenas(4) is (_glibc() is not None)
