"""``canaryctl status`` shows the canary's observed share of new connections beside its weight."""

from __future__ import annotations

from controller.core.status import Phase
from controller.core.status_view import TABLE_HEADERS, row_json, table_cells
from controller.core.traffic_share import traffic_share
from tests.test_status_view import progressing, row_of


def _share(canary: int, stable: int, weight: int = 20) -> dict[str, object]:
    share = traffic_share(canary=canary, stable=stable, weight=weight, canary_name="tcp-echo-v2")
    assert share is not None
    return share.as_dict()


def test_the_weight_cell_shows_the_share_seen_at_the_last_evaluation() -> None:
    row = row_of(progressing(last_traffic_share=_share(74, 338)))
    cells = dict(zip(TABLE_HEADERS, table_cells(row), strict=True))
    assert cells["WEIGHT"] == "20 (18.0% seen)"
    assert row_json(row)["trafficShare"]["connections"] == 412


def test_a_share_far_from_the_weight_says_so_in_the_table() -> None:
    row = row_of(progressing(last_traffic_share=_share(0, 412)))
    cells = dict(zip(TABLE_HEADERS, table_cells(row), strict=True))
    assert cells["WEIGHT"] == "20 (0.0% seen, far off)"
    assert row_json(row)["trafficShare"]["reason"].startswith("weight 20 % written, 0 of 412 new connections")


def test_a_share_measured_at_another_weight_or_after_the_run_is_not_shown() -> None:
    earlier_step = row_of(progressing(weight=50, last_traffic_share=_share(74, 338)))
    assert table_cells(earlier_step)[5] == "50"
    assert row_json(earlier_step)["trafficShare"] is None
    ended = row_of(progressing(phase=Phase.ROLLED_BACK, last_traffic_share=_share(74, 338)))
    assert row_json(ended)["trafficShare"] is None


def test_no_share_measured_leaves_the_weight_alone() -> None:
    row = row_of(progressing())
    assert table_cells(row)[5] == "20"
    assert row_json(row)["trafficShare"] is None
