"""Hypothesis strategies for the formats the API document names and JSON Schema does not define
(``services.gateway.constraints``), registered with Schemathesis: valid values, drawn as a client would send them.

Imported by tests/integration/test_api_fuzz.py. For the Schemathesis CLI against a running gateway:
``SCHEMATHESIS_HOOKS=tests.api_formats st run --checks all http://127.0.0.1:8080/openapi.json``.
"""

from __future__ import annotations

import phonenumbers
import schemathesis
from hypothesis import strategies as st

from services.gateway.constraints import DOMAIN_ENTRY, PHONE_NUMBER

# Each country's example number, in E.164: valid whatever country_code says beside it.
PHONE_NUMBERS = sorted(
    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    for region in phonenumbers.SUPPORTED_REGIONS
    if (number := phonenumbers.example_number(region)) is not None
)
phone_numbers = st.sampled_from(PHONE_NUMBERS)

_label = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_domain = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_label, min_size=1, max_size=3),
                    st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6))
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda octets: ".".join(map(str, octets)))
# As an admin types them: a name, a wildcard over its subdomains, an IDN, an address, localhost; any case.
domain_entries = st.one_of(
    _domain, _domain.map("*.".__add__), _domain.map(str.upper), st.sampled_from(["bücher.de", "*.bücher.de", "localhost"]),
    _ipv4,
)

schemathesis.openapi.format(PHONE_NUMBER, phone_numbers)
schemathesis.openapi.format(DOMAIN_ENTRY, domain_entries)
