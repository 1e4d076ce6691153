"""Shared by the end-to-end tests: the fake Discord's fixture and marker."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fakediscord.fixtures import fake_discord, pytest_configure  # noqa: E402,F401
