"""SamplingParams validation."""

import pytest

from selm.errors import ConfigError
from selm.sampling import SamplingParams


def test_defaults_and_normalisation() -> None:
    params = SamplingParams(n=4, stop_token_ids=[7, 9])
    assert (params.n, params.temperature, params.top_p, params.top_k, params.max_new_tokens, params.seed) == (
        4, 1.0, 1.0, 0, 64, 0)
    assert params.stop_token_ids == (7, 9) and hash(params) == hash(SamplingParams(n=4, stop_token_ids=(7, 9)))
    assert SamplingParams(temperature=0.0).greedy and not params.greedy


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 0), ("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5), ("top_k", -1), ("max_new_tokens", 0)],
)
def test_invalid_values(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"sampling.{field}: invalid value {value!r}"):
        SamplingParams(**{field: value})
