"""`restore --partition`: one partition of a GPT disk snapshot, byte for byte, fetching only its range."""

from __future__ import annotations

import pytest

from tests.diskimage import MissingTool, build_sample_image


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    path = tmp_path_factory.mktemp("disk") / "disk.img"
    try:
        info = build_sample_image(path, size_mib=64, esp_mib=16, marker=b"partition restore marker")
    except MissingTool as exc:
        pytest.skip(str(exc))
    return path, info


def test_each_partition_restores_byte_for_byte_and_fetches_only_its_range(cli, tmp_path, disk):
    path, info = disk
    cli("init")
    cli("backup", str(path))
    image = path.read_bytes()
    whole = cli("restore", "latest", "--to", str(tmp_path / "whole.img"), "--json").json()
    assert whole["partition"] is None and whole["fetched_bytes"] > 0
    for spec, part in (("2", info.partitions[1]), ("p1", info.partitions[0]), ("root", info.partitions[1]),
                       ("ESP", info.partitions[0])):
        out = tmp_path / f"p-{spec}.img"
        res = cli("restore", "latest", "--partition", spec, "--to", str(out), "--json").json()
        assert res["partition"] == part.number and res["size"] == part.size
        assert out.read_bytes() == image[part.start:part.start + part.size], spec
        assert res["fetched_bytes"] < whole["fetched_bytes"]
    esp = cli("restore", "latest", "--partition", "1", "--to", str(tmp_path / "esp2.img"), "--json").json()
    root = cli("restore", "latest", "--partition", "2", "--to", str(tmp_path / "root2.img"), "--json").json()
    # the two partitions together fetch about what the whole disk does: the chunks across an edge twice
    assert esp["fetched_bytes"] + root["fetched_bytes"] <= whole["fetched_bytes"] + (2 << 20)


def test_a_partition_that_is_not_there_is_one_clear_line(cli, tmp_path, disk):
    path, _ = disk
    cli("init")
    cli("backup", str(path))
    for spec, says in (("7", "matches no partition"), ("nosuchlabel", "matches no partition")):
        res = cli("restore", "latest", "--partition", spec, "--to", str(tmp_path / "x.img"), check=False)
        assert res.code == 2 and says in res.err and "p1 (" in res.err and "p2 (" in res.err, res.err
        assert not (tmp_path / "x.img").exists()


def test_a_snapshot_without_a_partition_table_says_so(cli, tmp_path):
    img = tmp_path / "plain.img"
    img.write_bytes(b"\x01" * (1 << 20))
    cli("init")
    cli("backup", str(img))
    res = cli("restore", "latest", "--partition", "1", "--to", str(tmp_path / "x.img"), check=False)
    assert res.code == 2 and "has no partition table" in res.err


def test_delta_and_seed_of_one_partition(cli, tmp_path, disk):
    import os

    path, info = disk
    part = info.partitions[1]
    cli("init")
    cli("backup", str(path))
    first = cli("snapshots", "--json").json()["snapshots"][0]["id"]
    changed = tmp_path / "changed.img"
    data = bytearray(path.read_bytes())
    at = part.start + part.size // 2
    data[at:at + 300_000] = os.urandom(300_000)
    changed.write_bytes(bytes(data))
    stored = cli("backup", "--json", str(changed)).json()["stored_bytes"]
    want = bytes(data[part.start:part.start + part.size])

    target = tmp_path / "p2.img"
    cli("restore", first, "--partition", "2", "--to", str(target))
    out = cli("restore", "latest", "--source", str(changed), "--partition", "2", "--to", str(target), "--delta",
              "--json").json()
    assert target.read_bytes() == want
    assert out["fetched_bytes"] <= 1.1 * stored + (2 << 20)  # the chunks across the partition's edges, fetched
    seeded = tmp_path / "p2-seeded.img"
    cli("restore", first, "--partition", "2", "--to", str(tmp_path / "old-p2.img"))
    out = cli("restore", "latest", "--source", str(changed), "--partition", "2", "--to", str(seeded), "--seed",
              str(tmp_path / "old-p2.img"), "--json").json()
    assert seeded.read_bytes() == want
    assert out["seeded"][0]["bytes"] > 0
    assert out["fetched_bytes"] <= 1.1 * stored + (2 << 20)


def _stored_in(cli, start: int, size: int) -> tuple[int, int]:
    """(stored bytes of the distinct chunks overlapping image bytes [start, start + size), the largest
    stored chunk) of the latest snapshot, read from the repository itself."""
    from agent.repo.cache import ObjectCache
    from agent.repo.chunklist import DATA
    from agent.repo.repository import Repository
    from backends.local import LocalBackend

    repo = Repository.open(LocalBackend(cli.repo), cli.passfile.read_bytes().strip(), cache=ObjectCache(None))
    try:
        index = repo.load_index()
        snap = max(repo.list_snapshots(), key=lambda s: s.time)
        seen: dict[bytes, int] = {}
        largest = 0
        for ext in repo.snapshot_extents(index, snap):
            if ext.kind == DATA:
                largest = max(largest, index.get(ext.id).length)
                if ext.offset < start + size and ext.offset + ext.length > start:
                    seen[ext.id] = index.get(ext.id).length
        return sum(seen.values()), largest
    finally:
        repo.close()


def test_a_partition_restore_fetches_at_most_its_stored_bytes_and_two_chunks(cli, tmp_path, disk):
    path, info = disk
    cli("init")
    cli("backup", str(path))
    for part in info.partitions:
        stored, largest = _stored_in(cli, part.start, part.size)
        res = cli("restore", "latest", "--partition", str(part.number), "--to", str(tmp_path / f"p{part.number}"),
                  "--json").json()
        assert 0 < stored <= res["fetched_bytes"] <= stored + 2 * largest, (part.number, stored, res)
