"""A registered endpoint holds its identity and place as one ``EndpointInfo`` (the record the
config, a CSV import and a report name it by): its attributes read that record, a change
replaces it, and the API view is what it was when the fields were the endpoint's own."""

from __future__ import annotations

from dataclasses import fields

from loa.control.endpoints import Endpoint
from loa.core.endpoint import EndpointInfo

CHO = EndpointInfo("loa-101", "phu-my-2", "Cụm loa chợ", 15.61, 108.11, "Chợ Phú Mỹ", "20551",
                   1_780_000_000.0)


def test_every_field_of_the_record_is_an_attribute_of_the_endpoint() -> None:
    ep = Endpoint(CHO, volume_pct=70, secret_hash="$7$x")
    assert ep.info is CHO
    assert {f.name: getattr(ep, f.name) for f in fields(EndpointInfo)} == {
        "id": "loa-101", "zone_id": "phu-my-2", "name": "Cụm loa chợ", "lat": 15.61,
        "lon": 108.11, "address": "Chợ Phú Mỹ", "admin_code": "20551",
        "created_at": 1_780_000_000.0}


def test_a_change_replaces_the_record_and_an_earlier_snapshot_stays_as_it_was() -> None:
    ep = Endpoint(CHO)
    before = ep.info
    ep.address = "Nhà văn hoá"
    ep.zone_id = "an-binh-1"
    assert (ep.address, ep.zone_id) == ("Nhà văn hoá", "an-binh-1")
    assert ep.info == EndpointInfo("loa-101", "an-binh-1", "Cụm loa chợ", 15.61, 108.11,
                                   "Nhà văn hoá", "20551", 1_780_000_000.0)
    assert before is CHO and before.address == "Chợ Phú Mỹ"  # handed to a worker: unchanged


def test_the_api_view_and_the_stored_record() -> None:
    ep = Endpoint(CHO, volume_pct=None, muted=True, power_on=False, secret_hash="$7$x")
    assert list(ep.describe().items()) == [
        ("id", "loa-101"), ("name", "Cụm loa chợ"), ("zone", "phu-my-2"), ("lat", 15.61),
        ("lon", 108.11), ("address", "Chợ Phú Mỹ"), ("admin_code", "20551"),
        ("volume_pct", None), ("muted", True), ("power_on", False),
        ("created_at", 1_780_000_000.0), ("connections", 0)]
    assert ep.record() == {
        "id": "loa-101", "zone": "phu-my-2", "name": "Cụm loa chợ", "lat": 15.61,
        "lon": 108.11, "address": "Chợ Phú Mỹ", "admin_code": "20551", "volume_pct": None,
        "muted": True, "power_on": False, "secret_hash": "$7$x",
        "created_at": 1_780_000_000.0}
