"""FakeWeChat endpoint modules: each module registers endpoints with ``wxmp.testing.fake.endpoint``."""
