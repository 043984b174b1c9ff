package main

import (
	"context"
	"strings"
	"testing"
)

// TestSenderListCommands: list mode/add/del/enable/disable/show act on the
// named user's lists only.
func TestSenderListCommands(t *testing.T) {
	env := testEnv(t)
	mustRun(t, env, "pw\npw\n", "user", "add", "alice")
	mustRun(t, env, "pw\npw\n", "user", "add", "bob")
	const spam = "BM-2cTux3PGRqHTEH6wyUP2sWeT4LrsGgy63z"
	if out := mustRun(t, env, "", "list", "show", "--user", "alice"); out != "mode\tblack\n" {
		t.Errorf("list show of a new user = %q", out)
	}
	mustRun(t, env, "", "list", "add", "--user", "alice", "black", spam, "--label", "spammer")
	mustFail(t, env, 1, "already on", "list", "add", "--user", "alice", "black", spam)
	mustFail(t, env, 2, "neither black nor white", "list", "add", "--user", "alice", "grey", spam)
	mustFail(t, env, 1, "checksum", "list", "add", "--user", "alice", "black", "BM-2cTux3PGRqHTEH6wyUP2sWeT4LrsGgy63Z")
	mustRun(t, env, "", "list", "add", "--user", "alice", "white", spam, "--disabled")
	if out := mustRun(t, env, "", "list", "show", "--user", "alice"); out != "mode\tblack\nblack\t"+spam+"\tenabled\tspammer\nwhite\t"+spam+"\tdisabled\t\n" {
		t.Errorf("list show = %q", out)
	}
	mustRun(t, env, "", "list", "mode", "--user", "alice", "white")
	mustFail(t, env, 2, "neither black nor white", "list", "mode", "--user", "alice", "grey")
	mustRun(t, env, "", "list", "enable", "--user", "alice", "white", spam)
	mustRun(t, env, "", "list", "disable", "--user", "alice", "black", spam)
	st := openTestStore(t, env)
	ctx := context.Background()
	alice, err := st.UserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if ok, white, err := st.SenderAllowed(ctx, alice.ID, spam); err != nil || !ok || !white {
		t.Fatalf("SenderAllowed after whitelisting = %v, %v, %v", ok, white, err)
	}
	mustRun(t, env, "", "list", "del", "--user", "alice", "white", spam)
	mustFail(t, env, 1, "is not on", "list", "del", "--user", "alice", "white", spam)
	if ok, _, _ := st.SenderAllowed(ctx, alice.ID, spam); ok {
		t.Fatal("whitelist mode let an unlisted sender through")
	}
	if out := mustRun(t, env, "", "list", "show", "--user", "bob"); out != "mode\tblack\n" {
		t.Errorf("bob sees alice's lists: %q", out)
	}
}

// TestAddressSet: address set difficulty stores the demand as multiples of
// the network minimum and clears LastPubkeySent (so the pubkey goes out
// again), mailinglist on|off sets the flag and name; address list shows
// both.
func TestAddressSet(t *testing.T) {
	env := testEnv(t)
	mustRun(t, env, "pw\npw\n", "user", "add", "alice")
	mustRun(t, env, "pw\npw\n", "user", "add", "bob")
	bm := strings.TrimSpace(mustRun(t, env, "", "address", "new", "--user", "alice", "--label", "Club"))
	st := openTestStore(t, env)
	ctx := context.Background()
	id, err := st.IdentityByAddress(ctx, bm)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.MarkPubkeySent(ctx, id.ID, id.CreatedAt); err != nil {
		t.Fatal(err)
	}
	// The test network's minimum is 1/1, so multiples are the values.
	mustRun(t, env, "", "address", "set", "--user", "alice", bm, "difficulty", "3", "small", "2.5")
	id, _ = st.IdentityByAddress(ctx, bm)
	if id.NonceTrialsPerByte != 3 || id.ExtraBytes != 2 || !id.LastPubkeySent.IsZero() {
		t.Fatalf("after difficulty 3 small 2.5: %d %d %v", id.NonceTrialsPerByte, id.ExtraBytes, id.LastPubkeySent)
	}
	mustRun(t, env, "", "address", "set", "--user", "alice", bm, "difficulty", "7")
	if id, _ = st.IdentityByAddress(ctx, bm); id.NonceTrialsPerByte != 7 || id.ExtraBytes != 2 {
		t.Fatalf("after difficulty 7: %d %d", id.NonceTrialsPerByte, id.ExtraBytes)
	}
	mustFail(t, env, 2, "not a number from 1", "address", "set", "--user", "alice", bm, "difficulty", "0.5")
	mustFail(t, env, 2, "difficulty N [small N]", "address", "set", "--user", "alice", bm, "difficulty", "2", "big", "3")
	mustFail(t, env, 1, "has no address", "address", "set", "--user", "bob", bm, "difficulty", "2")
	mustFail(t, env, 2, "unknown setting", "address", "set", "--user", "alice", bm, "colour", "red")

	mustRun(t, env, "", "address", "set", "--user", "alice", bm, "mailinglist", "on")
	if id, _ = st.IdentityByAddress(ctx, bm); !id.MailingList || id.MailingListName != "Club" {
		t.Fatalf("mailinglist on without --name: %v %q", id.MailingList, id.MailingListName)
	}
	mustRun(t, env, "", "address", "set", "--user", "alice", bm, "mailinglist", "on", "--name", "Chess club")
	list := mustRun(t, env, "", "address", "list", "--user", "alice")
	if !strings.Contains(list, "\tnormal\tClub\tdifficulty 7 small 2\tmailinglist [Chess club]\n") {
		t.Errorf("address list:\n%s", list)
	}
	mustRun(t, env, "", "address", "set", "--user", "alice", bm, "mailinglist", "off")
	if id, _ = st.IdentityByAddress(ctx, bm); id.MailingList {
		t.Fatal("mailinglist off left it on")
	}
	mustFail(t, env, 2, "mailinglist on|off", "address", "set", "--user", "alice", bm, "mailinglist", "maybe")

	ch := strings.TrimSpace(mustRun(t, env, "", "chan", "join", "--user", "alice", "a chan passphrase"))
	mustFail(t, env, 1, "is a chan", "address", "set", "--user", "alice", ch, "mailinglist", "on")
}
