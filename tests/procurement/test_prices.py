"""List prices (§3): effective-dated, append-only, looked up at the moment of the call."""

from __future__ import annotations

from decimal import Decimal

import pytest

from distributor.errors import Conflict, NotFound, ValidationFailed
from procurement.models import ListPriceVersion
from procurement.selectors import list_price
from procurement.services import list_price_set
from tests.procurement.factories import ProviderModelFactory, at

pytestmark = pytest.mark.django_db


@pytest.fixture
def m2() -> object:
    model = ProviderModelFactory(code="minimax-m2.5")
    list_price_set(
        model=model,
        effective_from=at("2026-01-01T00:00:00"),
        prices={"input": Decimal("0.30"), "cached_input": Decimal("0.03"), "output": Decimal("1.10")},
    )
    list_price_set(
        model=model,
        effective_from=at("2026-06-01T00:00:00"),
        prices={"input": Decimal("0.25"), "output": Decimal("1.0000000001")},
    )
    return model


def test_the_version_in_force_at_the_call_prices_it(m2: object) -> None:
    # The last second of May is still on the January version; midnight June 1 is the new one.
    assert list_price(
        model_code="minimax-m2.5", token_class="input", at=at("2026-05-31T23:59:59")
    ) == Decimal("0.30")
    assert list_price(
        model_code="minimax-m2.5", token_class="input", at=at("2026-06-01T00:00:00")
    ) == Decimal("0.25")
    # Ten decimal places survive storage.
    assert list_price(
        model_code="minimax-m2.5", token_class="output", at=at("2026-07-01T00:00:00")
    ) == Decimal("1.0000000001")
    # The zone of `at` does not matter: 08:00 in Shanghai on June 1 is midnight UTC.
    assert list_price(
        model_code="minimax-m2.5", token_class="input", at=at("2026-06-01T07:59:59+08:00")
    ) == Decimal("0.30")


def test_lookups_that_cannot_be_priced_say_why(m2: object) -> None:
    with pytest.raises(NotFound, match="unknown model 'nope'"):
        list_price(model_code="nope", token_class="input", at=at("2026-07-01T00:00:00"))
    with pytest.raises(NotFound, match="first price starts 2026-01-01"):
        list_price(model_code="minimax-m2.5", token_class="input", at=at("2025-12-31T23:59:59"))
    # The June version dropped cached_input: a class absent from a version has no price.
    with pytest.raises(NotFound, match="no cached_input price"):
        list_price(model_code="minimax-m2.5", token_class="cached_input", at=at("2026-07-01T00:00:00"))
    assert list_price(
        model_code="minimax-m2.5", token_class="cached_input", at=at("2026-02-01T00:00:00")
    ) == Decimal("0.03")
    with pytest.raises(NotFound, match="no cache_write price"):
        list_price(model_code="minimax-m2.5", token_class="cache_write", at=at("2026-02-01T00:00:00"))
    with pytest.raises(ValidationFailed, match="unknown token class"):
        list_price(model_code="minimax-m2.5", token_class="reasoning", at=at("2026-02-01T00:00:00"))


def test_price_versions_are_append_only(m2: object) -> None:
    # Slipping a version in between rewrites March..May: refused.
    with pytest.raises(ValidationFailed, match="append-only"):
        list_price_set(model=m2, effective_from=at("2026-03-01T00:00:00"), prices={"input": Decimal("0.2")})
    # Setting the same version again is a no-op; the same start with other prices is a conflict.
    again = list_price_set(
        model=m2,
        effective_from=at("2026-06-01T00:00:00"),
        prices={"input": Decimal("0.25"), "output": Decimal("1.0000000001")},
    )
    assert ListPriceVersion.objects.filter(model=m2).count() == 2
    assert again.effective_from == at("2026-06-01T00:00:00")
    with pytest.raises(Conflict):
        list_price_set(model=m2, effective_from=at("2026-06-01T00:00:00"), prices={"input": Decimal("0.26")})
    # With a clock (the admin), a change may not start in the past.
    with pytest.raises(ValidationFailed, match="cannot start in the past"):
        list_price_set(
            model=m2,
            effective_from=at("2026-07-01T00:00:00"),
            prices={"input": Decimal("0.2")},
            now=at("2026-08-01T00:00:00"),
        )


def test_bad_price_input_is_refused() -> None:
    model = ProviderModelFactory()
    with pytest.raises(ValidationFailed, match="unknown token class"):
        list_price_set(model=model, effective_from=at("2026-01-01T00:00:00"), prices={"inputs": Decimal(1)})
    with pytest.raises(ValidationFailed, match="more than 10 decimal places"):
        list_price_set(
            model=model, effective_from=at("2026-01-01T00:00:00"), prices={"input": Decimal("0.00000000001")}
        )
    with pytest.raises(ValidationFailed, match="negative"):
        list_price_set(model=model, effective_from=at("2026-01-01T00:00:00"), prices={"input": Decimal("-1")})
    with pytest.raises(ValidationFailed, match="not float"):
        list_price_set(model=model, effective_from=at("2026-01-01T00:00:00"), prices={"input": 0.3})  # type: ignore[dict-item]
