"""MIP and DIP tables and the choice of a pool address."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from gateway.nat import DipTable, MipTable, pool_address
from gateway.routing import Routing
from test_policy_builders import A, config, dip, iface, mip


def test_mip_lookups_both_ways():
    cfg = config(interfaces=[
        iface("ethernet3", "untrust", "1.1.1.1/24",
              mips=(mip("1.1.1.5", "10.1.1.5"), mip("1.1.3.0", "10.1.3.0", "255.255.255.0"))),
        iface("ethernet2", "dmz", "2.2.2.2/24", mips=(mip("2.2.2.3", "10.1.1.5"),))])
    t = MipTable(cfg)
    b = t.by_public(A("1.1.1.5"))
    assert (b.interface, b.to_host(A("1.1.1.5"))) == ("ethernet3", A("10.1.1.5"))
    assert t.by_public(A("1.1.3.200")).to_host(A("1.1.3.200")) == A("10.1.3.200")
    assert t.by_public(A("1.1.1.6")) is None
    assert {x.interface for x in t.by_host(A("10.1.1.5"))} == {"ethernet3", "ethernet2"}
    assert t.by_ip(A("1.1.3.0")) is not None and t.by_ip(A("1.1.3.1")) is None
    assert len(t.public_addresses()) == 2 + 256


def test_dip_incoming_owners():
    cfg = config(interfaces=[
        iface("ethernet3", "untrust", "1.1.1.1/24",
              dips=(dip(5, "1.1.1.20", "1.1.1.40", incoming=True), dip(6, "1.1.1.50", "1.1.1.51"))),
        iface("ethernet4", "untrust", "3.3.3.3/24", dip_interface_incoming=True)])
    t = DipTable(cfg, Routing(cfg).interface_ip)
    assert t.incoming_owner(A("1.1.1.20")) == ("ethernet3", 5)
    assert t.incoming_owner(A("1.1.1.40")) == ("ethernet3", 5)
    assert t.incoming_owner(A("1.1.1.41")) is None
    assert t.incoming_owner(A("1.1.1.50")) is None            # pool without incoming
    assert t.incoming_owner(A("3.3.3.3")) == ("ethernet4", None)
    assert t.incoming_owner(A("1.1.1.1")) is None             # no interface-ip incoming
    assert t.pool_owning(A("1.1.1.51")).pool.id == 6


@settings(max_examples=200)
@given(first=st.integers(0, 2**32 - 300), size=st.integers(1, 256),
       host=st.integers(0, 2**32 - 1), sport=st.integers(0, 65535), sticky=st.booleans())
def test_pool_address_is_in_pool_and_a_function_of_its_inputs(first, size, host, sport, sticky):
    pool = dip(1, str(A(first)), str(A(first + size - 1)))
    a = pool_address(pool, A(host), sticky=sticky, session=(sport,))
    assert pool.first <= a <= pool.last
    assert a == pool_address(pool, A(host), sticky=sticky, session=(sport,))
    if sticky:
        assert a == pool_address(pool, A(host), sticky=True, session=(sport + 1,))
