"""The one reader of address and network entries (``peers.parse_network``): what
``[limits] exempt`` / ``trusted_proxies`` (through ``AddressSet``) and ``[network]
fetch_allow`` / ``fetch_deny`` (through ``FetchRule``) accept, and what a station engineer is
told about an entry they do not."""

from __future__ import annotations

import ipaddress

import pytest

from loa.config import Config, ConfigError, apply_toml
from loa.core.fetch_policy import FetchPolicy, FetchRule
from loa.core.i18n import Explained
from loa.core.peers import AddressEntryError, AddressSet, parse_network

NET = ipaddress.ip_network


@pytest.mark.parametrize(("entry", "network"), [
    ("10.0.0.0/8", "10.0.0.0/8"),
    (" 192.168.5.0/24 ", "192.168.5.0/24"),  # blanks around an entry are not part of it
    ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),  # a netmask for a prefix
    ("0.0.0.0/0", "0.0.0.0/0"),
    # a bare address is its own network
    ("192.0.2.1", "192.0.2.1/32"),
    ("::1", "::1/128"),
    # IPv6
    ("2001:db8::/32", "2001:db8::/32"),
    ("fd00::/8", "fd00::/8"),
    ("::ffff:10.0.0.1", "::ffff:a00:1/128"),
])
def test_good_entries_name_their_network(entry: str, network: str) -> None:
    assert parse_network(entry) == NET(network)
    # both lists read an entry the same way
    assert AddressSet([entry]) == AddressSet([network])
    assert FetchRule.parse(entry).network == NET(network)


def test_an_address_set_and_a_fetch_rule_match_what_they_name() -> None:
    proxies = AddressSet(["192.0.2.10", "2001:db8:1::/48"])
    assert "192.0.2.10" in proxies and "192.0.2.11" not in proxies
    assert "2001:db8:1:ff::7" in proxies and "2001:db8:2::7" not in proxies
    policy = FetchPolicy.parse(allow=["192.0.2.10", "fd00::/8"])
    assert policy.refusal("192.0.2.10", "192.0.2.10") is None
    assert policy.refusal("fd00::9", "fd00::9") is None
    assert policy.refusal("fc00::9", "fc00::9") is not None


@pytest.mark.parametrize(("entry", "message"), [
    # host bits set: refused, not widened, and both ways to write it said
    ("10.0.0.1/8", "'10.0.0.1/8' is not a network: 10.0.0.1 has bits set beyond the /8 "
                   "prefix; write 10.0.0.0/8 for the network or 10.0.0.1 for the one address"),
    ("2001:db8::1/64", "'2001:db8::1/64' is not a network: 2001:db8::1 has bits set beyond "
                       "the /64 prefix; write 2001:db8::/64 for the network or 2001:db8::1 "
                       "for the one address"),
    # meant as an address, and not one: what is wrong with it
    ("127.1", "'127.1' is not a network or an address (Expected 4 octets in '127.1')"),
    ("10.0.0.0/33", "'10.0.0.0/33' is not a network or an address ('33' is not a valid "
                    "netmask)"),
    ("fe80::zz", "'fe80::zz' is not a network or an address (Only hex digits permitted in "
                 "'zz' in 'fe80::zz')"),
    # not an address at all; the entry as written, blanks and all
    (" gateway ", "' gateway ' is not an IP address or network"),
])
def test_a_bad_entry_is_named_with_what_is_wrong(entry: str, message: str) -> None:
    with pytest.raises(AddressEntryError) as caught:
        parse_network(entry)
    assert str(caught.value) == message
    # an Explained error: said in its reader's language where it is shown
    assert isinstance(caught.value, Explained) and isinstance(caught.value, ValueError)
    assert caught.value.message.fields["entry"] == entry


def test_the_config_names_the_list_and_the_entry() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_toml(Config(), {"limits": {"trusted_proxies": ["127.0.0.1", "192.168.1.10/16"]}})
    assert str(caught.value) == (
        "[limits] trusted_proxies: '192.168.1.10/16' is not a network: 192.168.1.10 has bits "
        "set beyond the /16 prefix; write 192.168.0.0/16 for the network or 192.168.1.10 for "
        "the one address")
    with pytest.raises(ConfigError) as caught:
        apply_toml(Config(), {"network": {"fetch_deny": ["10.0.0.1/8"]}})
    assert str(caught.value).startswith("[network] fetch_deny: '10.0.0.1/8' is not a network: ")
    with pytest.raises(ConfigError) as caught:
        apply_toml(Config(), {"network": {"fetch_allow": ["studio lan"]}})
    assert str(caught.value) == ("[network] fetch_allow: 'studio lan' is not a network, an "
                                 "address, a host name or *.domain")
