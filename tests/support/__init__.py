"""Test support: a recording fake Slack Web API and Slack-signed request builders.

    from tests.support.fake_slack import FakeSlack
    from tests.support import signed_requests as slack
"""

from . import signed_requests
from .fake_slack import Call, FakeSlack

__all__ = ["Call", "FakeSlack", "signed_requests"]
