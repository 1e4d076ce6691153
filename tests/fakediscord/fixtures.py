"""pytest fixture for the fake Discord.

In a test module (or a conftest.py that has tests/ on sys.path):

    from fakediscord.fixtures import fake_discord, pytest_configure  # noqa: F401

    @pytest.mark.fake_discord(scenario={"heartbeat_interval": 250}, tls=True)
    def test_x(fake_discord):
        fake_discord.post_message("hi", mention_bot=True)

Without the marker the fake starts with the default scenario. The fake's log is printed
when the test fails (pytest shows captured output), and the process is always stopped.
"""

import pytest

from fakediscord.harness import FakeDiscord


def pytest_configure(config):
    config.addinivalue_line("markers", "fake_discord(scenario=None, tls=False, verbose=False): "
                            "options for the fake_discord fixture")


@pytest.fixture
def fake_discord(request):
    marker = request.node.get_closest_marker("fake_discord")
    kwargs = dict(marker.kwargs) if marker else {}
    scenario = kwargs.pop("scenario", None)
    kwargs.setdefault("verbose", True)  # the log is printed only when the test fails
    fake = FakeDiscord(scenario, **kwargs).start()
    try:
        yield fake
    finally:
        print("---- fake Discord log ----")
        print(fake.log()[-20000:])
        fake.stop()
