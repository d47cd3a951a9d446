"""The canary's share of new connections against the written weight (controller.core.traffic_share)."""

from __future__ import annotations

import pytest

from controller.core.policy import TrafficShareCheck
from controller.core.traffic_share import MIN_CONNECTIONS, traffic_share


def test_a_selector_matching_nothing_is_off_with_the_reason_naming_the_selector() -> None:
    share = traffic_share(canary=None, stable=412, weight=20, canary_name="tcp-echo-v2")
    assert share is not None
    assert share.off
    assert share.reason == (
        "weight 20 % written, 0 of 412 new connections reached tcp-echo-v2: "
        "check spec.analysis.selector or the data plane"
    )


def test_a_share_near_the_weight_is_not_off() -> None:
    share = traffic_share(canary=74, stable=338, weight=20, canary_name="tcp-echo-v2")  # 18.0 %
    assert share is not None
    assert not share.off
    assert share.reason == ""
    assert share.describe() == "18.0 % of 412 new connections (weight 20 %)"
    assert share.as_dict()["share"] == pytest.approx(74 / 412, abs=1e-6)


def test_a_share_far_below_the_weight_is_off_with_the_band_expected() -> None:
    share = traffic_share(canary=8, stable=392, weight=20, canary_name="tcp-echo-v2")  # 2 %
    assert share is not None
    assert share.off
    assert "only 8 of 400 new connections (2.0 %) reached tcp-echo-v2 (expected 15-25 %)" in share.reason


def test_canary_connections_at_weight_zero_mean_clients_bypass_the_route() -> None:
    share = traffic_share(canary=60, stable=340, weight=0, canary_name="tcp-echo-v2")  # 15 %
    assert share is not None
    assert share.off
    assert share.reason.startswith("weight 0 % written, but 60 of 400 new connections (15.0 %) reached tcp-echo-v2")
    assert "without the route" in share.reason


def test_a_share_far_above_the_weight_is_off() -> None:
    share = traffic_share(canary=300, stable=100, weight=20, canary_name="tcp-echo-v2")
    assert share is not None
    assert share.off
    assert "300 of 400 new connections (75.0 %)" in share.reason


def test_few_connections_say_nothing_even_when_none_reached_the_canary() -> None:
    assert traffic_share(canary=0, stable=MIN_CONNECTIONS - 1, weight=50, canary_name="v2") is None
    # Enough to count, too few to be sure: 0 of 25 at weight 20 is plausible (0.8 ** 25 = 0.4 %).
    thin = traffic_share(canary=0, stable=25, weight=20, canary_name="v2")
    assert thin is not None
    assert not thin.off


def test_the_tolerance_widens_the_band() -> None:
    # 12 % at weight 20 with 2000 connections: certainly below 15 %, but inside a 10 pp tolerance.
    strict = traffic_share(canary=240, stable=1760, weight=20, canary_name="v2")
    loose = traffic_share(canary=240, stable=1760, weight=20, canary_name="v2", tolerance_pp=10)
    assert strict is not None
    assert loose is not None
    assert strict.off
    assert not loose.off


def test_nothing_is_said_without_a_stable_count_or_at_weight_100() -> None:
    assert traffic_share(canary=100, stable=None, weight=20, canary_name="v2") is None
    assert traffic_share(canary=100, stable=0, weight=100, canary_name="v2") is None


@pytest.mark.parametrize("canary", [0, 1, 5, 17, 40, 100])
def test_a_share_is_off_only_outside_weight_plus_minus_tolerance(canary: int) -> None:
    share = traffic_share(canary=canary, stable=200 - canary, weight=10, canary_name="v2")
    assert share is not None
    observed = canary / 200
    # 0 and 1 of 200 (upper bounds 3.7 % and 4.9 %) and 50 % are surely outside 5-15 %; 2.5 % .. 20 % may not be
    assert share.off == (canary in {0, 1, 100})
    if share.off:
        assert not 0.05 <= observed <= 0.15
    assert share.low <= observed <= share.high


def test_the_policy_field_defaults_to_hold_with_five_points() -> None:
    default = TrafficShareCheck()
    assert (default.check, default.tolerance) == ("hold", 5.0)
