"""Upgrade tests that run unchanged on virtual and on real stations (docs/pytest-plugin.md).

    pytest bench/test_station_example.py --fb-virtual 4            # 4 virtual modules
    pytest bench/test_station_example.py --fb-virtual 4 -n 4       # in parallel (pytest-xdist)
    pytest bench/test_station_example.py --fb-station bench/stations/real-4.yaml \\
           --fb-images build/agents --junitxml=results.xml         # a real station

Each test runs once per slot (ids are the slot names), holds its module for the test
alone, and leaves it on the version it found it on (1.0.0), so the tests can run in any
order on modules that stay on the bench. ``agent_image(version)`` is the bench agent for
the slot's model: built on the fly for a virtual module, taken from ``--fb-images DIR``
(``agent_<MODEL>_<VERSION>.bin``, made with the OpenCPU SDK) for a real one.
"""
import pytest

from fotabench import RetryPolicy


def test_upgrade_and_back(dut, upgrade, agent_image):
    upgrade(dut, agent_image("2.0.0"), expect_version="2.0.0").assert_pass()
    upgrade(dut, agent_image("1.0.0"), expect_version="1.0.0").assert_pass()


@pytest.mark.fb_protocol("ftp")
def test_upgrade_over_ftp(dut, upgrade, agent_image):
    result = upgrade(dut, agent_image("2.0.0"), expect_version="2.0.0")
    assert result.ok
    assert "UP_GET_FILE_OK" in result.state_names      # FTP's own state, never HTTP's
    upgrade(dut, agent_image("1.0.0"), expect_version="1.0.0").assert_pass()


@pytest.mark.fb_fault("drop:at=50%,times=1")
def test_a_dropped_download_is_an_error_and_the_retry_passes(dut, upgrade, agent_image):
    # The station's package server drops this module's first download half-way.
    result = upgrade(dut, agent_image("2.0.0"), expect_version="2.0.0",
                     retry=RetryPolicy(attempts=2, delay=1.0))
    first, second = result.attempts
    assert (first.outcome, first.cause) == ("error", "server"), first.reason
    assert first.transfers[-1]["faults"] == ["drop"]      # the server's own record
    assert second.outcome == "pass"
    # The marker's faults go to every upgrade of the test; faults=() for one without.
    upgrade(dut, agent_image("1.0.0"), expect_version="1.0.0", faults=()).assert_pass()
