"""The size planner (agent.restore.resize) on arbitrary partition tables: a smaller disk is accepted
exactly when every partition, and for GPT the backup table after it, fits; a refusal names each
partition that does not fit and the bytes the disk lacks; nothing past the disk's end is written."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import TargetError, UsageError
from agent.restore.resize import STANDARD_GPT_ARRAY, plan_resize

SECTOR = 512


@st.composite
def tables(draw, scheme=None):
    scheme = scheme or draw(st.sampled_from(["gpt", "mbr"]))
    n = draw(st.integers(1, 6))
    parts, lba = [], 2048
    for number in range(1, n + 1):
        lba += draw(st.integers(0, 4096))
        sectors = draw(st.integers(1, 1 << 16))
        parts.append({"number": number, "start": lba * SECTOR, "size": sectors * SECTOR,
                      "type_id": "0x83" if scheme == "mbr" else "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                      "name": draw(st.sampled_from(["", "Linux root", "data"])),
                      "fs_label": draw(st.sampled_from([None, "root", "ESP"])),
                      "filesystem": draw(st.sampled_from([None, "ext4", "vfat"]))})
        lba += sectors
    if scheme == "mbr" and n > 4:
        parts = parts[:4]
    if draw(st.booleans()):
        parts.reverse()  # table order need not be disk order
    return {"scheme": scheme, "sector_size": SECTOR, "partitions": parts, "warnings": []}


def _end(p):
    return p["start"] + p["size"]


@settings(max_examples=300, deadline=None)
@given(tables(), st.integers(-40, 40), st.data())
def test_a_smaller_disk_is_accepted_exactly_when_everything_fits(table, slack_sectors, data):
    reserve = (STANDARD_GPT_ARRAY // SECTOR + 1) * SECTOR if table["scheme"] == "gpt" else 0
    need = max(_end(p) for p in table["partitions"]) + reserve
    image = need + data.draw(st.integers(1, 1 << 20)) * SECTOR
    disk = need + slack_sectors * SECTOR
    if disk >= image or disk <= 0:
        return
    if slack_sectors >= 0:
        plan = plan_resize(table, image, disk, "t.img")
        assert plan.write == disk < image  # nothing past the new end is written
        assert plan.move_gpt == (table["scheme"] == "gpt")
        return
    with pytest.raises(TargetError) as err:
        plan_resize(table, image, disk, "t.img")
    msg = str(err.value)
    assert f"the disk lacks {-slack_sectors * SECTOR} bytes" in msg
    short = sorted(p["number"] for p in table["partitions"] if _end(p) + reserve > disk)
    named = [int(n) for n in re.findall(r"partition (\d+)", msg)]
    assert named == short and err.value.exit_code == 16


@settings(max_examples=200, deadline=None)
@given(tables(), st.integers(0, 1 << 30))
def test_a_larger_disk_writes_the_whole_image_and_grow_picks_the_last_partition(table, extra):
    image = max(_end(p) for p in table["partitions"]) + 64 * SECTOR
    plan = plan_resize(table, image, image + extra * SECTOR, "t.img", grow=True)
    assert plan.write == image
    assert plan.move_gpt == (table["scheme"] == "gpt")
    last = max(table["partitions"], key=_end)
    assert plan.grow is not None and plan.grow.number == last["number"]


def test_the_refusal_names_the_partition_by_number_and_label():
    table = {"scheme": "gpt", "sector_size": 512, "partitions": [
        {"number": 1, "start": 1 << 20, "size": 16 << 20, "fs_label": "ESP"},
        {"number": 2, "start": 17 << 20, "size": 39 << 20, "fs_label": "root", "name": "Linux root"}]}
    with pytest.raises(TargetError) as err:
        plan_resize(table, 64 << 20, 50 << 20, "small.img")
    lack = (56 << 20) + 33 * 512 - (50 << 20)
    assert str(err.value) == (f"small.img holds {50 << 20} bytes, too few for partition 2 (root): the disk lacks "
                              f"{lack} bytes (6.0 MiB) to hold it and the backup GPT after it")


def test_without_a_partition_table_only_a_full_size_disk_will_do():
    with pytest.raises(TargetError, match="fewer than the image"):
        plan_resize(None, 4 << 20, 3 << 20, "t.img")
    assert plan_resize(None, 4 << 20, 8 << 20, "t.img").fixes is False
    with pytest.raises(UsageError, match="no partition table"):
        plan_resize(None, 4 << 20, 8 << 20, "t.img", grow=True)


def test_grow_refuses_an_extended_mbr_partition_and_a_damaged_primary_gpt():
    mbr = {"scheme": "mbr", "sector_size": 512, "partitions": [
        {"number": 1, "start": 1 << 20, "size": 8 << 20, "type_id": "0x83"},
        {"number": 2, "start": 9 << 20, "size": 8 << 20, "type_id": "0x05"},
        {"number": 5, "start": 10 << 20, "size": 7 << 20, "type_id": "0x83"}]}
    with pytest.raises(UsageError, match="partition 2 is an extended partition"):
        plan_resize(mbr, 32 << 20, 64 << 20, "t.img", grow=True)
    gpt = {"scheme": "gpt", "sector_size": 512, "partitions": mbr["partitions"][:1],
           "warnings": ["primary GPT header invalid (missing); using the backup header at LBA 65535"]}
    with pytest.raises(TargetError, match="primary GPT header is damaged"):
        plan_resize(gpt, 32 << 20, 64 << 20, "t.img")
    assert plan_resize(gpt, 32 << 20, 32 << 20, "t.img").fixes is False  # same size: nothing to move
