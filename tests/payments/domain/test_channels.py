"""Legacy `method` -> channel and legacy payment status -> verification status (SPEC backfill rules)."""
import pytest

from payments.domain.channels import channel_for_method, normalise_method, verification_status_for

pytestmark = pytest.mark.pay10_regression


@pytest.mark.parametrize(
    "method, channel",
    [
        ("card", "CARD"), (" Card ", "CARD"), ("CARD", "CARD"),
        ("bank", "BANK_TRANSFER"), ("bank_transfer", "BANK_TRANSFER"), ("bank-transfer", "BANK_TRANSFER"),
        ("Bank Transfer", "BANK_TRANSFER"), ("  bank -  transfer ", "BANK_TRANSFER"), ("transfer", "BANK_TRANSFER"),
        ("wire", "BANK_TRANSFER"), ("WIRE", "BANK_TRANSFER"),
        ("cash", "CASH"), ("Cash ", "CASH"),
        ("mpesa", "MOBILE_MONEY"), ("MPESA", "MOBILE_MONEY"), ("mobile", "MOBILE_MONEY"),
        ("mobile_money", "MOBILE_MONEY"), ("Mobile_Money", "MOBILE_MONEY"), ("mobile money", "MOBILE_MONEY"),
        ("Mobile-Money", "MOBILE_MONEY"),
        ("cheque", "CHEQUE"), ("Cheque", "CHEQUE"), ("check", "CHEQUE"),
        ("", "OTHER"), ("   ", "OTHER"), (None, "OTHER"), ("crypto", "OTHER"), ("paypal", "OTHER"),
        ("m-pesa", "OTHER"), ("cards", "OTHER"), ("legacy", "OTHER"),
    ],
)
def test_channel_for_method_maps_messy_spellings(method, channel):
    assert channel_for_method(method) == channel


def test_normalise_method_treats_dash_space_and_underscore_alike():
    assert normalise_method(" Bank-Transfer ") == normalise_method("bank transfer") == "bank_transfer"


@pytest.mark.parametrize(
    "legacy, verification",
    [("SUCCEEDED", "VERIFIED"), ("PENDING", "PENDING"), ("FAILED", "REJECTED"), ("REFUNDED", "REJECTED")],
)
def test_verification_status_for_maps_every_legacy_status(legacy, verification):
    assert verification_status_for(legacy) == verification


def test_verification_status_for_rejects_an_unknown_status():
    with pytest.raises(ValueError, match="unknown legacy payment status"):
        verification_status_for("LOST")


def test_the_pure_vocabulary_matches_the_models_choices():
    """The domain layer spells channels and deviation kinds without importing the ORM; the
    models' choices must say the same, or a plan could write a value the database refuses."""
    from payments.domain import backfill, channels
    from payments.models import BackfillDeviation, Channel

    assert {channels.CARD, channels.BANK_TRANSFER, channels.CASH, channels.MOBILE_MONEY, channels.CHEQUE,
            channels.OTHER, channels.LEGACY} == set(Channel.values)
    kinds = {value for name, value in vars(backfill.Deviation).items() if name.isupper()}
    assert kinds == set(BackfillDeviation.Kind.values)
