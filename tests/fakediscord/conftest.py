from fakediscord.fixtures import fake_discord, pytest_configure  # noqa: F401
