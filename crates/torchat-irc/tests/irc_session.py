#!/usr/bin/env python3
"""A real IRC client library (jaraco's `irc`, from PyPI) driving three torchat IRC gateways.

Started by tests/irc_clients.rs, which runs three torchat daemons (alice, bob, carol; the
alice-carol link is blocked) on the direct transport and one gateway in front of each.
Exits 0 when the whole session went as expected; prints what each client saw otherwise.
"""

import argparse
import os
import sys
import time

import irc.client

HOST = "127.0.0.1"


class Fail(Exception):
    pass


class Peer:
    """One IRC client connection with a log of what it received."""

    def __init__(self, reactor, name, port, password, nick=None):
        self.name = name
        self.nick = nick or name
        self.events = []
        self.raw = []
        self.conn = reactor.server().connect(
            HOST, port, self.nick, password=password, username=name, ircname=f"{name} (test)"
        )

    def record(self, event):
        if event.type == "all_raw_messages":
            self.raw.append(event.arguments[0])
        else:
            source = event.source.nick if event.source and "!" in event.source else event.source
            self.events.append((event.type, str(source or ""), str(event.target or ""), list(event.arguments)))

    def mark(self):
        return len(self.events)


class Session:
    def __init__(self, password):
        self.reactor = irc.client.Reactor()
        self.peers = {}
        self.password = password
        self.reactor.add_global_handler("all_events", self._dispatch, -20)

    def _dispatch(self, conn, event):
        for p in self.peers.values():
            if p.conn is conn:
                p.record(event)

    def connect(self, name, port, password=None, nick=None):
        p = Peer(self.reactor, name, port, password, nick)
        self.peers[name] = p
        return p

    def expect(self, peer, what, pred, since=0, timeout=30.0):
        """Processes events until one of peer's (from index `since`) matches `pred`."""
        deadline = time.time() + timeout
        while True:
            for ev in peer.events[since:]:
                try:
                    if pred(*ev):
                        return ev
                except (IndexError, TypeError):
                    pass
            if time.time() > deadline:
                raise Fail(f"{peer.name}: timed out waiting for {what}")
            self.reactor.process_once(0.1)

    def expect_raw(self, peer, what, pred, since=0, timeout=30.0):
        deadline = time.time() + timeout
        while True:
            for line in peer.raw[since:]:
                if pred(line):
                    return line
            if time.time() > deadline:
                raise Fail(f"{peer.name}: timed out waiting for {what}")
            self.reactor.process_once(0.1)

    def pump(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.reactor.process_once(0.1)

    def dump(self):
        for p in self.peers.values():
            print(f"---- what {p.name} received ----")
            for line in p.raw:
                print(f"  {line}")


def step(msg):
    print(f"== {msg}", flush=True)


def run(s, args):
    ids = {"alice": args.alice_id, "bob": args.bob_id, "carol": args.carol_id, "dave": args.dave_id}

    step("a wrong password and a missing one are refused")
    bad = s.connect("intruder", args.alice, password="not-the-password")
    s.expect(bad, "464 for a wrong password", lambda t, *_: t == "passwdmismatch")
    s.expect(bad, "the connection closed", lambda t, *_: t == "disconnect")
    nopass = s.connect("nopass", args.alice)
    s.expect(nopass, "464 without a password", lambda t, *_: t == "passwdmismatch")
    s.expect(nopass, "the connection closed", lambda t, *_: t == "disconnect")
    if any(t == "welcome" for t, *_ in bad.events + nopass.events):
        raise Fail("a client without the right password was welcomed")

    step("three clients register with the password")
    a = s.connect("alice", args.alice, args.password)
    b = s.connect("bob", args.bob, args.password)
    c = s.connect("carol", args.carol, args.password)
    for p in (a, b, c):
        s.expect(p, "welcome (001)", lambda t, *_: t == "welcome")
        s.expect(p, "ISUPPORT (005)", lambda t, *_: t == "featurelist")
        s.expect(p, "JOIN &torchat", lambda t, src, tgt, *_: t == "join" and tgt == "&torchat")
        s.expect(p, "names of &torchat", lambda t, src, tgt, a_: t == "endofnames" and a_[0] == "&torchat")

    step("buddies are added through the control channel")
    m = a.mark()
    a.conn.privmsg("&torchat", f"add {ids['bob']} bob")
    s.expect(a, "add confirmed", lambda t, src, tgt, ar: t == "pubmsg" and src == "torchat" and "added" in ar[0], m)
    a.conn.privmsg("&torchat", f"add {ids['dave']} dave")
    b.conn.privmsg("&torchat", f"add {ids['alice']} alice")
    b.conn.privmsg("&torchat", f"add {ids['carol']} carol")
    c.conn.privmsg("&torchat", f"add {ids['bob']} bob")
    m = a.mark()
    a.conn.privmsg("&torchat", "help")
    s.expect(a, "help text", lambda t, src, tgt, ar: t == "pubmsg" and src == "torchat" and "create [#name]" in ar[0], m)

    step("presence: voice in &torchat means online")
    voiced = lambda nick: lambda t, src, tgt, ar: t == "mode" and tgt == "&torchat" and ar == ["+v", nick]
    s.expect(a, "+v bob", voiced("bob"))
    s.expect(b, "+v alice", voiced("alice"))
    s.expect(b, "+v carol", voiced("carol"))
    s.expect(c, "+v bob", voiced("bob"))

    step("1:1 chat across the two daemons, both ways")
    m = b.mark()
    a.conn.privmsg("bob", "hello bob, ünïcödé")
    s.expect(b, "alice's message", lambda t, src, tgt, ar: t == "privmsg" and src == "alice" and ar == ["hello bob, ünïcödé"], m)
    m = a.mark()
    b.conn.privmsg("alice", "hi alice")
    s.expect(a, "bob's message", lambda t, src, tgt, ar: t == "privmsg" and src == "bob" and ar == ["hi alice"], m)
    m = b.mark()
    a.conn.action("bob", "waves")
    s.expect(b, "alice's action", lambda t, src, tgt, ar: t == "action" and src == "alice" and ar == ["waves"], m)
    m = b.mark()
    a.conn.privmsg(ids["bob"], "to your onion id")
    s.expect(b, "a message sent to the onion id", lambda t, src, tgt, ar: t == "privmsg" and src == "alice" and ar == ["to your onion id"], m)

    step("a message to an offline buddy is queued, and said so")
    m = a.mark()
    a.conn.privmsg("dave", "see you later")
    s.expect(a, "queued notice", lambda t, src, tgt, ar: t == "privnotice" and "queued" in ar[0] and "dave" in ar[0], m)

    step("WHOIS shows the state")
    m = len(a.raw)
    a.conn.whois(["bob"])
    s.expect_raw(a, "WHOIS 311", lambda l: f" 311 alice bob tc {ids['bob']}.onion " in l, m)
    s.expect_raw(a, "WHOIS state", lambda l: f" 320 alice bob :is {ids['bob']}, available" in l, m)
    s.expect_raw(a, "end of WHOIS", lambda l: " 318 alice bob " in l, m)

    step("alice creates a group through the control channel and invites bob")
    m = a.mark()
    a.conn.privmsg("&torchat", "create #party")
    s.expect(a, "JOIN #party", lambda t, src, tgt, ar: t == "join" and src == "alice" and tgt == "#party", m)
    s.expect(a, "create confirmed", lambda t, src, tgt, ar: t == "pubmsg" and "created the group #party" in ar[0], m)
    m, mb = a.mark(), b.mark()
    a.conn.invite("bob", "#party")
    s.expect(a, "341 inviting", lambda t, *_: t == "inviting", m)
    inv = s.expect(b, "an IRC INVITE", lambda t, src, tgt, ar: t == "invite" and src == "alice", mb)
    chan_b = inv[3][0]
    print(f"   bob was invited to {chan_b}")

    step("bob JOINs: that accepts the invite")
    m, ma = b.mark(), a.mark()
    b.conn.join(chan_b)
    s.expect(b, f"JOIN {chan_b}", lambda t, src, tgt, ar: t == "join" and src == "bob" and tgt == chan_b, m)
    s.expect(b, "names with alice", lambda t, src, tgt, ar: t == "namreply" and ar[1] == chan_b and "+alice" in ar[2].split(), m)
    s.expect(b, "member notice", lambda t, src, tgt, ar: t == "pubnotice" and tgt == chan_b and "you are now a member" in ar[0], m)
    s.expect(a, "bob joins #party", lambda t, src, tgt, ar: t == "join" and src == "bob" and tgt == "#party", ma)

    step("bob invites carol (who cannot reach alice); carol joins")
    mc = c.mark()
    b.conn.invite("carol", chan_b)
    inv = s.expect(c, "carol's INVITE", lambda t, src, tgt, ar: t == "invite" and src == "bob", mc)
    chan_c = inv[3][0]
    m, ma = c.mark(), a.mark()
    c.conn.join(chan_c)
    s.expect(c, "member notice", lambda t, src, tgt, ar: t == "pubnotice" and tgt == chan_c and "you are now a member" in ar[0], m, 60)
    s.expect(a, "carol joins #party", lambda t, src, tgt, ar: t == "join" and tgt == "#party" and src != "bob", ma, 60)

    step("group messages show their trust")
    mb, mc = b.mark(), c.mark()
    a.conn.privmsg("#party", "hello group")
    s.expect(b, "(Direct) at bob", lambda t, src, tgt, ar: t == "pubmsg" and src == "alice" and tgt == chan_b and ar == ["(Direct) hello group"], mb)
    ev = s.expect(c, "relayed at carol", lambda t, src, tgt, ar: t == "pubmsg" and tgt == chan_c and ar[0].endswith(" hello group"), mc, 60)
    if ev[3][0] != "(1 of 2) hello group":
        raise Fail(f"carol should see alice's line relayed by bob as (1 of 2), got {ev[3][0]!r}")
    ma, mc = a.mark(), c.mark()
    b.conn.privmsg(chan_b, "hi all")
    s.expect(a, "(Direct) at alice", lambda t, src, tgt, ar: t == "pubmsg" and src == "bob" and tgt == "#party" and ar == ["(Direct) hi all"], ma)
    s.expect(c, "(Direct) at carol", lambda t, src, tgt, ar: t == "pubmsg" and src == "bob" and ar == ["(Direct) hi all"], mc)

    step("NAMES and WHO in the group channel")
    m = len(b.raw)
    b.conn.who(chan_b)
    s.expect_raw(b, "WHO alice", lambda l: f" 352 bob {chan_b} tc {ids['alice']}.onion irc.torchat alice H+ " in l, m)
    s.expect_raw(b, "end of WHO", lambda l: f" 315 bob {chan_b} " in l, m)

    step("alice PARTs: she leaves the group")
    m, mb = a.mark(), b.mark()
    a.conn.part("#party", "bye all")
    s.expect(a, "own PART", lambda t, src, tgt, *_: t == "part" and src == "alice" and tgt == "#party", m)
    s.expect(b, "alice's PART", lambda t, src, tgt, *_: t == "part" and src == "alice" and tgt == chan_b, mb)

    step("QUIT")
    for p in (a, b, c):
        p.conn.quit("done")
    for p in (a, b, c):
        s.expect(p, "disconnect", lambda t, *_: t == "disconnect")


def main():
    ap = argparse.ArgumentParser()
    for n in ("alice", "bob", "carol"):
        ap.add_argument(f"--{n}", type=int, required=True, help=f"{n}'s gateway port")
    for n in ("alice", "bob", "carol", "dave"):
        ap.add_argument(f"--{n}-id", required=True)
    ap.add_argument("--password", required=True)
    args = ap.parse_args()
    s = Session(args.password)
    try:
        run(s, args)
    except Fail as e:
        s.dump()
        print(f"FAILED: {e}", flush=True)
        sys.exit(1)
    if os.environ.get("TORCHAT_IRC_DUMP") == "1":
        s.dump()
    print("IRC session OK", flush=True)


if __name__ == "__main__":
    main()
