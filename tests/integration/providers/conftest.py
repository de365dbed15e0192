"""The fake OpenAI fixtures, for every test in this folder."""

from tests.support.fake_openai_fixtures import fake_openai, openai_settings

__all__ = ["fake_openai", "openai_settings"]
